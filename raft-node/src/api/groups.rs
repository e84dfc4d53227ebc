//! The classic group protocol's requests: FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, DescribeGroups and ListGroups. Each goes
//! to the coordinator machine of the group's offsets partition on this broker
//! (`group_coordinator`); a broker that does not lead that partition answers
//! NOT_COORDINATOR and the client looks the coordinator up again.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use log_core::group::{self, GroupDescription, GroupState, JoinResponse, Leaving, Protocol, Reply, SyncResponse};
use log_core::ErrorCode;

use super::group_coordinator::{offsets_partition, OFFSETS_TOPIC};
use super::{str_bytes, KafkaApi};

/// FindCoordinator's key type for groups (1 is transactions, which do not exist).
const GROUP_KEY: i8 = 0;

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

fn group_id(s: &str) -> GroupId {
    GroupId(str_bytes(s))
}

impl KafkaApi {
    pub fn find_coordinator(&self, request: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
        // v4 batches keys; earlier versions ask for one.
        let keys: Vec<String> = if request.coordinator_keys.is_empty() {
            vec![request.key.to_string()]
        } else {
            request.coordinator_keys.iter().map(|k| k.to_string()).collect()
        };
        if request.key_type == GROUP_KEY && self.view().metadata.topic(OFFSETS_TOPIC).is_none() {
            // Answered COORDINATOR_NOT_AVAILABLE (the client retries) while it is created, as Kafka
            // does: waiting here would hold back every later answer on this connection, which go
            // out in order, for as long as the metadata group takes (seconds, if its leader died).
            self.start_creating_offsets_topic();
        }
        let found = keys.into_iter().map(|key| {
            let found =
                if request.key_type == GROUP_KEY { self.coordinator_of(&key) } else { Err(ErrorCode::InvalidRequest) };
            (key, found)
        });
        find_coordinator_answer(found.collect(), version)
    }

    /// The broker leading `group_id`'s offsets partition.
    fn coordinator_of(&self, group_id: &str) -> Result<CoordinatorAddr, ErrorCode> {
        let view = self.view();
        let partition = offsets_partition(&view.metadata, group_id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let leader = view.leaders.get(&partition).ok_or(ErrorCode::CoordinatorNotAvailable)?.leader;
        let id = i32::try_from(leader).map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        let broker = view.metadata.broker(id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        Ok((id, broker.host.clone(), i32::from(broker.port)))
    }

    pub async fn join_group(&self, request: &JoinGroupRequest, version: i16, client_id: &str) -> JoinGroupResponse {
        let member_id = request.member_id.to_string();
        let seat = match self.coordinator_seat(&request.group_id).await {
            Ok(seat) => seat,
            Err(code) => return join_answer(JoinResponse::error(code, &member_id), version),
        };
        let join = group::JoinRequest {
            group_id: request.group_id.to_string(),
            member_id: member_id.clone(),
            instance_id: opt(&request.group_instance_id),
            client_id: client_id.to_string(),
            client_host: String::new(),
            session_timeout_ms: request.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms: if version == 0 { request.session_timeout_ms } else { request.rebalance_timeout_ms },
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| Protocol { name: p.name.to_string(), metadata: p.metadata.to_vec() })
                .collect(),
            require_known_member: version >= 4 && request.group_instance_id.is_none(),
        };
        let answer = match self.wait_for_reply(seat, |groups, now, token| groups.join(now, token, join)).await {
            Some(Reply::Join(r)) => r,
            _ => JoinResponse::error(ErrorCode::NotCoordinator, &member_id),
        };
        join_answer(answer, version)
    }

    pub async fn sync_group(&self, request: &SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let seat = match self.coordinator_seat(&request.group_id).await {
            Ok(seat) => seat,
            Err(code) => return sync_answer(SyncResponse::error(code), version),
        };
        let sync = group::SyncRequest {
            group_id: request.group_id.to_string(),
            member_id: request.member_id.to_string(),
            instance_id: opt(&request.group_instance_id),
            generation: request.generation_id,
            protocol_type: opt(&request.protocol_type),
            protocol_name: opt(&request.protocol_name),
            assignments: request.assignments.iter().map(|a| (a.member_id.to_string(), a.assignment.to_vec())).collect(),
        };
        let answer = match self.wait_for_reply(seat, |groups, now, token| groups.sync(now, token, sync)).await {
            Some(Reply::Sync(r)) => r,
            _ => SyncResponse::error(ErrorCode::NotCoordinator),
        };
        sync_answer(answer, version)
    }

    pub async fn heartbeat(&self, request: &HeartbeatRequest) -> HeartbeatResponse {
        let code = match self.coordinator_seat(&request.group_id).await {
            Ok(seat) => self.with_groups(seat, |groups, now| {
                let instance = opt(&request.group_instance_id);
                let (group, member) = (&request.group_id, &request.member_id);
                (groups.heartbeat(now, group, member, instance.as_deref(), request.generation_id), Vec::new())
            }),
            Err(code) => code,
        };
        HeartbeatResponse::default().with_error_code(code.code())
    }

    pub async fn leave_group(&self, request: &LeaveGroupRequest) -> LeaveGroupResponse {
        // v0-2 name one member; v3+ a batch, possibly by instance id.
        let batched = !request.members.is_empty();
        let leaving: Vec<Leaving> = if batched {
            let member = |m: &kafka_protocol::messages::leave_group_request::MemberIdentity| Leaving {
                member_id: m.member_id.to_string(),
                instance_id: opt(&m.group_instance_id),
            };
            request.members.iter().map(member).collect()
        } else {
            vec![Leaving { member_id: request.member_id.to_string(), instance_id: None }]
        };
        let errors = match self.coordinator_seat(&request.group_id).await {
            Ok(seat) => self.with_groups(seat, |groups, now| groups.leave(now, &request.group_id, &leaving)),
            Err(code) => return LeaveGroupResponse::default().with_error_code(code.code()),
        };
        leave_answer(&leaving, &errors, batched)
    }

    pub async fn describe_groups(&self, request: &DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
        let mut groups = Vec::new();
        for id in &request.groups {
            let described = match self.coordinator_seat(id).await {
                Ok(seat) => match self.with_groups(seat, |g, _| (g.describe(id), Vec::new())) {
                    Some(d) => Described::Known(d),
                    None => {
                        Described::Unknown { has_offsets: self.with_offsets(seat, |o| o.of_group(id).next().is_some()) }
                    }
                },
                Err(code) => Described::Error(code),
            };
            groups.push(describe_answer(id, described, version));
        }
        DescribeGroupsResponse::default().with_groups(groups)
    }

    /// The groups this broker coordinates: those with members, and those
    /// with only committed offsets (Empty).
    pub fn list_groups(&self, request: &ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let mut listed = BTreeMap::new();
        for per_coordinator in self.each_coordinator(|groups, offsets| {
            let mut all: Vec<(String, String, GroupState)> =
                offsets.groups().into_iter().map(|g| (g, "consumer".to_string(), GroupState::Empty)).collect();
            all.extend(groups.list());
            all
        }) {
            for (id, kind, state) in per_coordinator {
                listed.insert(id, (kind, state));
            }
        }
        list_answer(listed, &request.states_filter, version)
    }
}

/// A coordinator's broker: id, host, port.
type CoordinatorAddr = (i32, String, i32);

/// v4 answers every key in `coordinators`; earlier versions the one key at the top.
fn find_coordinator_answer(
    found: Vec<(String, Result<CoordinatorAddr, ErrorCode>)>,
    version: i16,
) -> FindCoordinatorResponse {
    let coordinators: Vec<Coordinator> = found
        .into_iter()
        .map(|(key, found)| match found {
            Ok((node, host, port)) => Coordinator::default()
                .with_key(str_bytes(&key))
                .with_node_id(BrokerId(node))
                .with_host(str_bytes(&host))
                .with_port(port),
            Err(code) => Coordinator::default()
                .with_key(str_bytes(&key))
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(code.code()),
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let first = coordinators.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(first.error_code)
        .with_node_id(first.node_id)
        .with_host(first.host)
        .with_port(first.port)
}

fn join_answer(r: JoinResponse, version: i16) -> JoinGroupResponse {
    let members = r.members.into_iter().map(|m| {
        JoinGroupResponseMember::default()
            .with_member_id(str_bytes(&m.member_id))
            // Instance ids from v5.
            .with_group_instance_id(m.instance_id.as_deref().filter(|_| version >= 5).map(str_bytes))
            .with_metadata(m.metadata.into())
    });
    JoinGroupResponse::default()
        .with_error_code(r.error.code())
        .with_generation_id(r.generation)
        // The protocol type from v7; before it the name is not nullable ("" on an error).
        .with_protocol_type(r.protocol_type.as_deref().filter(|_| version >= 7).map(str_bytes))
        .with_protocol_name(Some(str_bytes(r.protocol_name.as_deref().unwrap_or_default())))
        .with_leader(str_bytes(&r.leader))
        .with_member_id(str_bytes(&r.member_id))
        .with_members(members.collect())
}

fn sync_answer(r: SyncResponse, version: i16) -> SyncGroupResponse {
    // The protocol type and name from v5.
    SyncGroupResponse::default()
        .with_error_code(r.error.code())
        .with_protocol_type(r.protocol_type.as_deref().filter(|_| version >= 5).map(str_bytes))
        .with_protocol_name(r.protocol_name.as_deref().filter(|_| version >= 5).map(str_bytes))
        .with_assignment(r.assignment.into())
}

/// Before v3 (not `batched`) the one member's error is the request's.
fn leave_answer(leaving: &[Leaving], errors: &[ErrorCode], batched: bool) -> LeaveGroupResponse {
    if !batched {
        let code = errors.first().copied().unwrap_or(ErrorCode::None);
        return LeaveGroupResponse::default().with_error_code(code.code());
    }
    let members = leaving.iter().zip(errors).map(|(l, code)| {
        MemberResponse::default()
            .with_member_id(str_bytes(&l.member_id))
            .with_group_instance_id(l.instance_id.as_deref().map(str_bytes))
            .with_error_code(code.code())
    });
    LeaveGroupResponse::default().with_members(members.collect())
}

/// What the coordinator knows of a group DescribeGroups names.
enum Described {
    Error(ErrorCode),
    Known(GroupDescription),
    /// No members: Empty if it has committed offsets, else Dead (Kafka's
    /// answer for an unknown group, with no error).
    Unknown {
        has_offsets: bool,
    },
}

fn describe_answer(id: &GroupId, described: Described, version: i16) -> DescribedGroup {
    let group = DescribedGroup::default().with_group_id(id.clone());
    match described {
        Described::Error(code) => group.with_error_code(code.code()),
        Described::Unknown { has_offsets } => {
            group.with_group_state(str_bytes(if has_offsets { GroupState::Empty.name() } else { "Dead" }))
        }
        Described::Known(d) => {
            let members = d.members.into_iter().map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.member_id))
                    // Instance ids from v4.
                    .with_group_instance_id(m.instance_id.as_deref().filter(|_| version >= 4).map(str_bytes))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host))
                    .with_member_metadata(m.metadata.into())
                    .with_member_assignment(m.assignment.into())
            });
            group
                .with_group_state(str_bytes(d.state.name()))
                .with_protocol_type(str_bytes(&d.protocol_type))
                .with_protocol_data(str_bytes(&d.protocol))
                .with_members(members.collect())
        }
    }
}

/// Groups by id with their protocol type and state, filtered by state (v4+).
fn list_answer(
    listed: BTreeMap<String, (String, GroupState)>,
    states: &[StrBytes],
    version: i16,
) -> ListGroupsResponse {
    let wanted = |state: &str| states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state));
    let groups = listed
        .into_iter()
        .filter(|(_, (_, state))| wanted(state.name()))
        .map(|(id, (kind, state))| {
            ListedGroup::default()
                .with_group_id(group_id(&id))
                .with_protocol_type(str_bytes(&kind))
                // States from v4, types from v5.
                .with_group_state(str_bytes(if version >= 4 { state.name() } else { "" }))
                .with_group_type(str_bytes(if version >= 5 { "classic" } else { "" }))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::protocol::Encodable;
    use log_core::group::{JoinedMember, MemberDescription};

    use super::*;
    use crate::kafka::versions::supported;

    /// Encodes `answer(version)` at every version of `key` we speak: a field
    /// set that a version lacks fails the encoding (and closed the client's
    /// connection, as FindCoordinator v2 once did).
    fn encodes_at_every_version<R: Encodable>(key: ApiKey, answer: impl Fn(i16) -> R) {
        let api = supported(key).unwrap();
        for version in api.min..=api.max {
            let mut buf = BytesMut::new();
            answer(version).encode(&mut buf, version).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
        }
    }

    fn full_join() -> JoinResponse {
        JoinResponse {
            error: ErrorCode::None,
            generation: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "m-1".into(),
            member_id: "m-1".into(),
            members: vec![JoinedMember { member_id: "m-1".into(), instance_id: Some("i".into()), metadata: vec![1] }],
        }
    }

    fn full_description() -> GroupDescription {
        GroupDescription {
            state: GroupState::Stable,
            generation: 3,
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![MemberDescription {
                member_id: "m-1".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/h".into(),
                metadata: vec![1],
                assignment: vec![2],
            }],
        }
    }

    #[test]
    fn every_answer_encodes_at_every_supported_version() {
        encodes_at_every_version(ApiKey::FindCoordinator, |v| {
            let found =
                vec![("g".to_string(), Ok((1, "h".to_string(), 9092))), ("x".into(), Err(ErrorCode::NotCoordinator))];
            find_coordinator_answer(found, v)
        });
        encodes_at_every_version(ApiKey::JoinGroup, |v| join_answer(full_join(), v));
        encodes_at_every_version(ApiKey::JoinGroup, |v| {
            join_answer(JoinResponse::error(ErrorCode::MemberIdRequired, "m"), v)
        });
        encodes_at_every_version(ApiKey::SyncGroup, |v| {
            let r = SyncResponse {
                error: ErrorCode::None,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: vec![1],
            };
            sync_answer(r, v)
        });
        encodes_at_every_version(ApiKey::LeaveGroup, |v| {
            let leaving = [Leaving { member_id: "m".into(), instance_id: Some("i".into()).filter(|_| v >= 3) }];
            leave_answer(&leaving, &[ErrorCode::UnknownMemberId], v >= 3)
        });
        encodes_at_every_version(ApiKey::DescribeGroups, |v| {
            let g = group_id("g");
            let groups = vec![
                describe_answer(&g, Described::Known(full_description()), v),
                describe_answer(&g, Described::Unknown { has_offsets: true }, v),
                describe_answer(&g, Described::Error(ErrorCode::NotCoordinator), v),
            ];
            DescribeGroupsResponse::default().with_groups(groups)
        });
        encodes_at_every_version(ApiKey::ListGroups, |v| {
            let listed = BTreeMap::from([("g".to_string(), ("consumer".to_string(), GroupState::Stable))]);
            list_answer(listed, &[], v)
        });
    }

    #[test]
    fn find_coordinator_answers_the_one_key_before_v4_and_every_key_from_it() {
        let found =
            || vec![("g".to_string(), Ok((2, "h".to_string(), 9093))), ("x".into(), Err(ErrorCode::NotCoordinator))];
        let old = find_coordinator_answer(found(), 3);
        assert_eq!((old.node_id.0, old.port, old.error_code), (2, 9093, 0));
        let batched = find_coordinator_answer(found(), 4);
        let codes: Vec<i16> = batched.coordinators.iter().map(|c| c.error_code).collect();
        assert_eq!(codes, vec![0, ErrorCode::NotCoordinator.code()]);
    }
}
