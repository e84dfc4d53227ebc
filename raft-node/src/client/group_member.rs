//! A consumer's membership in a group, Kafka's classic protocol: JoinGroup
//! and SyncGroup (the leader runs the range assignor), Heartbeat, OffsetCommit
//! with the member's generation, LeaveGroup. Committed offsets are read with
//! [`Client::committed_offsets`], which needs no membership.
//!
//! Errors are typed by what the caller should do next: rejoin, look the
//! coordinator up again, or retry later.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, OffsetCommitRequest, SyncGroupRequest,
};
use log_core::ErrorCode;

use super::consumer_protocol::{decode_assignment, decode_subscription, encode_assignment, encode_subscription};
use super::consumer_protocol::{range_assign, Assignment};
use super::groups::{
    commit_error, commit_topics, group_id, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
    OFFSET_COMMIT_VERSION,
};
use super::{str_bytes, Client, CommittedOffset, Error};

const JOIN_GROUP_VERSION: i16 = 7;
const SYNC_GROUP_VERSION: i16 = 5;
const HEARTBEAT_VERSION: i16 = 4;
const LEAVE_GROUP_VERSION: i16 = 4;
const PROTOCOL_TYPE: &str = "consumer";
const RANGE: &str = "range";

/// What went wrong, sorted by what the member does next.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The member's generation is over (a rebalance, an expired session, a
    /// fenced instance): join again.
    #[error("rejoin: {0}")]
    Rejoin(Error),
    /// The coordinator moved, is loading or is not there yet: find it again.
    #[error("coordinator moved: {0}")]
    CoordinatorMoved(Error),
    /// Anything else (a connection, a timeout, another error code).
    #[error(transparent)]
    Client(Error),
}

impl GroupError {
    /// The Kafka error code the coordinator answered, if it answered with one.
    pub fn code(&self) -> Option<i16> {
        match self {
            GroupError::Rejoin(e) | GroupError::CoordinatorMoved(e) | GroupError::Client(e) => match e {
                Error::Kafka { code, .. } => Some(*code),
                _ => None,
            },
        }
    }
}

impl From<Error> for GroupError {
    fn from(error: Error) -> Self {
        let rejoin = [
            ErrorCode::RebalanceInProgress,
            ErrorCode::IllegalGeneration,
            ErrorCode::UnknownMemberId,
            ErrorCode::FencedInstanceId,
        ];
        match &error {
            Error::Kafka { code, .. } if rejoin.iter().any(|e| e.code() == *code) => GroupError::Rejoin(error),
            Error::Kafka {
                code: COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR, ..
            } => GroupError::CoordinatorMoved(error),
            _ => GroupError::Client(error),
        }
    }
}

/// How a member joins.
#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub group: String,
    /// The one topic it subscribes to.
    pub topic: String,
    /// The coordinator drops a member not heard from for this long.
    pub session_timeout: Duration,
    /// How long a rebalance waits for the members to rejoin.
    pub rebalance_timeout: Duration,
}

/// One member of a consumer group: its id and generation once joined.
pub struct Membership {
    config: MemberConfig,
    /// Empty until the coordinator gives one.
    member_id: String,
    /// -1 outside a generation.
    generation: i32,
}

impl Membership {
    pub fn new(config: MemberConfig) -> Self {
        Membership { config, member_id: String::new(), generation: -1 }
    }

    pub fn group(&self) -> &str {
        &self.config.group
    }

    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    fn error(&self, what: &str, code: i16) -> GroupError {
        Error::kafka(format!("{what} in group {}", self.config.group), code, None).into()
    }

    /// Joins (or rejoins) the group and syncs: the partitions of the new
    /// generation assigned to this member.
    pub async fn join(&mut self, client: &mut Client) -> Result<Assignment, GroupError> {
        let joined = self.join_group(client).await?;
        let assignments =
            if joined.leader == joined.member_id { self.assign(client, &joined).await? } else { Vec::new() };
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.config.group))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id))
            .with_protocol_type(Some(str_bytes(PROTOCOL_TYPE)))
            .with_protocol_name(Some(str_bytes(RANGE)))
            .with_assignments(assignments);
        // Followers wait for the leader's assignment.
        let timeout = self.config.rebalance_timeout + client.config.request_timeout;
        let group = self.config.group.clone();
        let response =
            client.send_to_coordinator(&group, SYNC_GROUP_VERSION, &request, timeout, |r| r.error_code).await;
        let response = response.inspect_err(|_| self.generation = -1)?;
        if response.error_code != 0 {
            self.generation = -1;
            return Err(self.error("sync", response.error_code));
        }
        decode_assignment(&response.assignment)
            .ok_or_else(|| GroupError::Client(Error::Protocol("an assignment that does not decode".into())))
    }

    /// JoinGroup until the coordinator answers with a generation; a new
    /// member first gets its id (MEMBER_ID_REQUIRED) and joins again with it.
    async fn join_group(&mut self, client: &mut Client) -> Result<JoinGroupResponse, GroupError> {
        let metadata = encode_subscription(std::slice::from_ref(&self.config.topic))?;
        let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        // The coordinator answers once every member has rejoined, or the rebalance timed out.
        let timeout = self.config.rebalance_timeout + client.config.request_timeout;
        let group = self.config.group.clone();
        self.generation = -1;
        for _ in 0..2 {
            let request = JoinGroupRequest::default()
                .with_group_id(group_id(&group))
                .with_session_timeout_ms(millis(self.config.session_timeout))
                .with_rebalance_timeout_ms(millis(self.config.rebalance_timeout))
                .with_member_id(str_bytes(&self.member_id))
                .with_protocol_type(str_bytes(PROTOCOL_TYPE))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(str_bytes(RANGE))
                    .with_metadata(metadata.clone())]);
            let response: JoinGroupResponse =
                client.send_to_coordinator(&group, JOIN_GROUP_VERSION, &request, timeout, |r| r.error_code).await?;
            match response.error_code {
                0 => {
                    self.member_id = response.member_id.to_string();
                    self.generation = response.generation_id;
                    return Ok(response);
                }
                code if code == ErrorCode::MemberIdRequired.code() => self.member_id = response.member_id.to_string(),
                code => {
                    if [ErrorCode::UnknownMemberId.code(), ErrorCode::FencedInstanceId.code()].contains(&code) {
                        self.member_id.clear();
                    }
                    return Err(self.error("join", code));
                }
            }
        }
        Err(self.error("join", ErrorCode::MemberIdRequired.code()))
    }

    /// The leader's SyncGroup assignments: the range assignor over every
    /// member's subscription and the subscribed topics' partition counts.
    async fn assign(
        &self,
        client: &mut Client,
        joined: &JoinGroupResponse,
    ) -> Result<Vec<SyncGroupRequestAssignment>, GroupError> {
        let subscriptions: BTreeMap<String, Vec<String>> = joined
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), decode_subscription(&m.metadata).unwrap_or_default()))
            .collect();
        let mut partitions = BTreeMap::new();
        for topic in subscriptions.values().flatten() {
            if !partitions.contains_key(topic) {
                let count = client.topic(topic).await?.partitions.len();
                partitions.insert(topic.clone(), i32::try_from(count).unwrap_or(i32::MAX));
            }
        }
        let mut assignments = Vec::new();
        for (member, assignment) in range_assign(&subscriptions, &partitions) {
            assignments.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(str_bytes(&member))
                    .with_assignment(encode_assignment(&assignment)?),
            );
        }
        Ok(assignments)
    }

    /// Tells the coordinator this member is alive; a rebalance under way
    /// answers `Rejoin` (REBALANCE_IN_PROGRESS), while the generation still
    /// holds for a commit.
    pub async fn heartbeat(&mut self, client: &mut Client) -> Result<(), GroupError> {
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.config.group))
            .with_generation_id(self.generation)
            .with_member_id(str_bytes(&self.member_id));
        let timeout = client.config.request_timeout;
        let group = self.config.group.clone();
        let response =
            client.send_to_coordinator(&group, HEARTBEAT_VERSION, &request, timeout, |r| r.error_code).await?;
        match response.error_code {
            0 => Ok(()),
            code => Err(self.error("heartbeat", code)),
        }
    }

    /// Commits `offsets` (the next offset to read, per partition of the
    /// member's topic) in this member's generation. One attempt: after an
    /// answer that leaves it unknown whether the commit was written, a retry
    /// would hide that from the caller.
    pub async fn commit(&mut self, client: &mut Client, offsets: &BTreeMap<i32, i64>) -> Result<(), GroupError> {
        let offsets: Vec<CommittedOffset> = offsets
            .iter()
            .map(|(&partition, &offset)| CommittedOffset { topic: self.config.topic.clone(), partition, offset })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(&self.config.group))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(str_bytes(&self.member_id))
            .with_topics(commit_topics(&offsets));
        let addr = client.coordinator(&self.config.group).await?;
        let response = client.request(&addr, OFFSET_COMMIT_VERSION, &request).await?;
        match commit_error(&response) {
            0 => Ok(()),
            code => Err(self.error("commit", code)),
        }
    }

    /// Leaves the group; the member then has neither id nor generation.
    pub async fn leave(&mut self, client: &mut Client) -> Result<(), GroupError> {
        let member_id = std::mem::take(&mut self.member_id);
        self.generation = -1;
        let request = LeaveGroupRequest::default()
            .with_group_id(group_id(&self.config.group))
            .with_members(vec![MemberIdentity::default().with_member_id(str_bytes(&member_id))]);
        let timeout = client.config.request_timeout;
        let group = self.config.group.clone();
        let member_error = |r: &kafka_protocol::messages::LeaveGroupResponse| {
            if r.error_code != 0 {
                return r.error_code;
            }
            r.members.iter().map(|m| m.error_code).find(|&c| c != 0).unwrap_or(0)
        };
        let response = client.send_to_coordinator(&group, LEAVE_GROUP_VERSION, &request, timeout, member_error).await?;
        match member_error(&response) {
            0 => Ok(()),
            code => Err(self.error("leave", code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(code: ErrorCode) -> Error {
        Error::kafka("x".into(), code.code(), None)
    }

    #[test]
    fn errors_say_what_to_do_next() {
        for code in [
            ErrorCode::RebalanceInProgress,
            ErrorCode::IllegalGeneration,
            ErrorCode::UnknownMemberId,
            ErrorCode::FencedInstanceId,
        ] {
            assert!(matches!(GroupError::from(kafka(code)), GroupError::Rejoin(_)), "{code:?}");
        }
        for code in
            [ErrorCode::NotCoordinator, ErrorCode::CoordinatorNotAvailable, ErrorCode::CoordinatorLoadInProgress]
        {
            assert!(matches!(GroupError::from(kafka(code)), GroupError::CoordinatorMoved(_)), "{code:?}");
        }
        let timeout = Error::Timeout { addr: "a".into(), timeout: Duration::from_secs(1) };
        assert!(matches!(GroupError::from(timeout), GroupError::Client(_)));
        let other = GroupError::from(kafka(ErrorCode::UnknownServerError));
        assert!(matches!(other, GroupError::Client(_)));
        assert_eq!(other.code(), Some(-1));
    }
}
