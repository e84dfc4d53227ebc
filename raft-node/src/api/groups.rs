//! The classic group protocol's requests: FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, DescribeGroups and ListGroups. Each goes
//! to the coordinator machine of the group's offsets partition on this broker
//! (`group_coordinator`); a broker that does not lead that partition answers
//! NOT_COORDINATOR and the client looks the coordinator up again.

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
use log_core::group::{self, GroupState, Leaving, Protocol, Reply};
use log_core::ErrorCode;

use super::group_coordinator::offsets_partition;
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
    pub async fn find_coordinator(&self, request: &FindCoordinatorRequest, version: i16) -> FindCoordinatorResponse {
        // v4 batches keys; earlier versions ask for one.
        let keys: Vec<String> = if request.coordinator_keys.is_empty() {
            vec![request.key.to_string()]
        } else {
            request.coordinator_keys.iter().map(|k| k.to_string()).collect()
        };
        if request.key_type == GROUP_KEY
            && self.view().metadata.topic(super::group_coordinator::OFFSETS_TOPIC).is_none()
        {
            self.ensure_offsets_topic().await;
        }
        let mut coordinators = Vec::new();
        for key in keys {
            let found =
                if request.key_type == GROUP_KEY { self.coordinator_of(&key) } else { Err(ErrorCode::InvalidRequest) };
            coordinators.push(match found {
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
            });
        }
        // v4 answers every key in `coordinators`; earlier versions the one key at the top.
        if version >= 4 {
            return FindCoordinatorResponse::default().with_coordinators(coordinators);
        }
        let first = coordinators.first().cloned().unwrap_or_default();
        FindCoordinatorResponse::default()
            .with_error_code(first.error_code)
            .with_node_id(first.node_id)
            .with_host(first.host)
            .with_port(first.port)
    }

    /// The broker leading `group_id`'s offsets partition: id, host, port.
    fn coordinator_of(&self, group_id: &str) -> Result<(i32, String, i32), ErrorCode> {
        let view = self.view();
        let partition = offsets_partition(&view.metadata, group_id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let leader = view.leaders.get(&partition).ok_or(ErrorCode::CoordinatorNotAvailable)?.leader;
        let id = i32::try_from(leader).map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        let broker = view.metadata.broker(id).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        Ok((id, broker.host.clone(), i32::from(broker.port)))
    }

    pub async fn join_group(&self, request: &JoinGroupRequest, version: i16, client_id: &str) -> JoinGroupResponse {
        let member_id = request.member_id.to_string();
        let error = |code: ErrorCode| {
            JoinGroupResponse::default()
                .with_error_code(code.code())
                .with_generation_id(-1)
                .with_member_id(str_bytes(&member_id))
        };
        let seat = match self.coordinator_seat(&request.group_id).await {
            Ok(seat) => seat,
            Err(code) => return error(code),
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
        match self.wait_for_reply(seat, |groups, now, token| groups.join(now, token, join)).await {
            Some(Reply::Join(r)) => JoinGroupResponse::default()
                .with_error_code(r.error.code())
                .with_generation_id(r.generation)
                .with_protocol_type(r.protocol_type.as_deref().filter(|_| version >= 7).map(str_bytes))
                // Before v7 the name is not nullable: an error answer carries "".
                .with_protocol_name(Some(str_bytes(r.protocol_name.as_deref().unwrap_or_default())))
                .with_leader(str_bytes(&r.leader))
                .with_member_id(str_bytes(&r.member_id))
                .with_members(
                    r.members
                        .into_iter()
                        .map(|m| {
                            JoinGroupResponseMember::default()
                                .with_member_id(str_bytes(&m.member_id))
                                .with_group_instance_id(
                                    m.instance_id.as_deref().filter(|_| version >= 5).map(str_bytes),
                                )
                                .with_metadata(m.metadata.into())
                        })
                        .collect(),
                ),
            _ => error(ErrorCode::NotCoordinator),
        }
    }

    pub async fn sync_group(&self, request: &SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let error = |code: ErrorCode| SyncGroupResponse::default().with_error_code(code.code());
        let seat = match self.coordinator_seat(&request.group_id).await {
            Ok(seat) => seat,
            Err(code) => return error(code),
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
        match self.wait_for_reply(seat, |groups, now, token| groups.sync(now, token, sync)).await {
            Some(Reply::Sync(r)) => SyncGroupResponse::default()
                .with_error_code(r.error.code())
                .with_protocol_type(r.protocol_type.as_deref().filter(|_| version >= 5).map(str_bytes))
                .with_protocol_name(r.protocol_name.as_deref().filter(|_| version >= 5).map(str_bytes))
                .with_assignment(r.assignment.into()),
            _ => error(ErrorCode::NotCoordinator),
        }
    }

    pub async fn heartbeat(&self, request: &HeartbeatRequest) -> HeartbeatResponse {
        let code = match self.coordinator_seat(&request.group_id).await {
            Ok(seat) => self.with_groups(seat, |groups, now| {
                let instance = opt(&request.group_instance_id);
                let code = groups.heartbeat(
                    now,
                    &request.group_id,
                    &request.member_id,
                    instance.as_deref(),
                    request.generation_id,
                );
                (code, Vec::new())
            }),
            Err(code) => code,
        };
        HeartbeatResponse::default().with_error_code(code.code())
    }

    pub async fn leave_group(&self, request: &LeaveGroupRequest) -> LeaveGroupResponse {
        // v0-2 name one member; v3+ a batch, possibly by instance id.
        let leaving: Vec<Leaving> = if request.members.is_empty() {
            vec![Leaving { member_id: request.member_id.to_string(), instance_id: None }]
        } else {
            let member = |m: &kafka_protocol::messages::leave_group_request::MemberIdentity| Leaving {
                member_id: m.member_id.to_string(),
                instance_id: opt(&m.group_instance_id),
            };
            request.members.iter().map(member).collect()
        };
        let seat = match self.coordinator_seat(&request.group_id).await {
            Ok(seat) => seat,
            Err(code) => return LeaveGroupResponse::default().with_error_code(code.code()),
        };
        let errors = self.with_groups(seat, |groups, now| groups.leave(now, &request.group_id, &leaving));
        let members: Vec<MemberResponse> = leaving
            .iter()
            .zip(&errors)
            .map(|(l, code)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(&l.member_id))
                    .with_group_instance_id(l.instance_id.as_deref().map(str_bytes))
                    .with_error_code(code.code())
            })
            .collect();
        // Before v3 the one member's error is the request's.
        let code = if request.members.is_empty() {
            errors.first().copied().unwrap_or(ErrorCode::None)
        } else {
            ErrorCode::None
        };
        let members = if request.members.is_empty() { Vec::new() } else { members };
        LeaveGroupResponse::default().with_error_code(code.code()).with_members(members)
    }

    pub async fn describe_groups(&self, request: &DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
        let mut groups = Vec::new();
        for id in &request.groups {
            let described = DescribedGroup::default().with_group_id(id.clone());
            let seat = match self.coordinator_seat(id).await {
                Ok(seat) => seat,
                Err(code) => {
                    groups.push(described.with_error_code(code.code()).with_group_state(str_bytes("")));
                    continue;
                }
            };
            let description = self.with_groups(seat, |g, _| (g.describe(id), Vec::new()));
            groups.push(match description {
                Some(d) => described
                    .with_group_state(str_bytes(d.state.name()))
                    .with_protocol_type(str_bytes(&d.protocol_type))
                    .with_protocol_data(str_bytes(&d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_group_instance_id(
                                        m.instance_id.as_deref().filter(|_| version >= 4).map(str_bytes),
                                    )
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_member_metadata(m.metadata.into())
                                    .with_member_assignment(m.assignment.into())
                            })
                            .collect(),
                    ),
                // Kafka describes an unknown group as Dead, with no error.
                None => {
                    let state = if self.with_offsets(seat, |o| o.of_group(id).next().is_some()) {
                        GroupState::Empty.name()
                    } else {
                        "Dead"
                    };
                    described.with_group_state(str_bytes(state)).with_protocol_type(str_bytes(""))
                }
            });
        }
        DescribeGroupsResponse::default().with_groups(groups)
    }

    /// The groups this broker coordinates: those with members, and those
    /// with only committed offsets (Empty).
    pub fn list_groups(&self, request: &ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let mut listed = std::collections::BTreeMap::new();
        for per_coordinator in self.each_coordinator(|groups, offsets| {
            let mut all: Vec<(String, String, &'static str)> =
                offsets.groups().into_iter().map(|g| (g, "consumer".to_string(), GroupState::Empty.name())).collect();
            all.extend(groups.list().into_iter().map(|(id, kind, state)| (id, kind, state.name())));
            all
        }) {
            for (id, kind, state) in per_coordinator {
                listed.insert(id, (kind, state));
            }
        }
        let wanted = |state: &str| {
            request.states_filter.is_empty() || request.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state))
        };
        let groups = listed
            .into_iter()
            .filter(|(_, (_, state))| wanted(state))
            .map(|(id, (kind, state))| {
                ListedGroup::default()
                    .with_group_id(group_id(&id))
                    .with_protocol_type(str_bytes(&kind))
                    // States from v4, types from v5.
                    .with_group_state(str_bytes(if version >= 4 { state } else { "" }))
                    .with_group_type(str_bytes(if version >= 5 { "classic" } else { "" }))
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }
}
