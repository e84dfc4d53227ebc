//! Consumer groups: the coordinator's state machine for Kafka's classic group
//! protocol (`Groups`), and the committed offsets its log holds (`offsets`).
//!
//! Pure: time comes in as milliseconds, member ids are made from a prefix the
//! caller supplies. A request that must wait (JoinGroup until the rebalance
//! completes, SyncGroup until the leader's assignment arrives) is named by a
//! `Token` the caller chooses; its answer comes out later, from whichever
//! input completed it, as a `(Token, Reply)`.

mod machine;
pub mod offsets;

pub use machine::Groups;

use crate::ErrorCode;

/// Names a waiting JoinGroup or SyncGroup request; chosen by the caller.
pub type Token = u64;

/// Kafka's `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
pub const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
pub const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

/// One protocol (assignor) a member supports, with its opaque metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member joining for the first time.
    pub member_id: String,
    /// `group.instance.id`: a static member.
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and
    /// its id, and joins again with it (KIP-394).
    pub require_known_member: bool,
}

/// A member as the group leader sees it in its JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: ErrorCode,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member, for the leader only: it runs the assignor.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// A join refused with `error`, naming the member it answers.
    pub fn error(error: ErrorCode, member_id: &str) -> Self {
        JoinResponse {
            error,
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    /// v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, by member id; empty from the others.
    pub assignments: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Vec<u8>,
}

impl SyncResponse {
    /// A sync refused with `error`.
    pub fn error(error: ErrorCode) -> Self {
        SyncResponse { error, protocol_type: None, protocol_name: None, assignment: Vec::new() }
    }
}

/// The answer to a waiting request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Join(JoinResponse),
    Sync(SyncResponse),
}

/// Answers due now, each to the request its token names.
pub type Replies = Vec<(Token, Reply)>;

/// A member leaving (LeaveGroup): by id, by instance id (v3+), or both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaving {
    pub member_id: String,
    pub instance_id: Option<String>,
}

/// The classic protocol's group states, as Kafka names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A member as DescribeGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its metadata for the chosen protocol (empty before one is chosen).
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// The partition of the offsets topic that coordinates `group_id`: Kafka's
/// `abs(groupId.hashCode) % partitions`, with Java's string hash, so a group
/// lands on the partition it would in Kafka.
pub fn coordinator_partition(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    (hash & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_partition_matches_kafka() {
        // Java: "my-group".hashCode() == -1906497762; Kafka masks the sign bit.
        assert_eq!(coordinator_partition("my-group", 50), (-1_906_497_762i32 & 0x7fff_ffff) % 50);
        assert_eq!(coordinator_partition("", 8), 0);
        for id in ["a", "group-1", "ünïcode", &"x".repeat(1000)] {
            assert!((0..8).contains(&coordinator_partition(id, 8)));
        }
    }
}
