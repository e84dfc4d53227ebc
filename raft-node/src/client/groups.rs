//! Consumer groups as an administrator sees them: list, describe (members,
//! their assignments, committed offsets) and commit offsets for an inactive
//! group. Each group request goes to the group's coordinator, found with
//! FindCoordinator and looked up again while it moves or loads.

use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::consumer_protocol::decode_assignment;
use super::{topic_name, BrokerInfo, Client, Error};

const FIND_COORDINATOR_VERSION: i16 = 3;
const LIST_GROUPS_VERSION: i16 = 4;
const DESCRIBE_GROUPS_VERSION: i16 = 5;
const OFFSET_FETCH_VERSION: i16 = 7;
pub(super) const OFFSET_COMMIT_VERSION: i16 = 8;

/// Errors after which the coordinator is looked up again.
pub(super) const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub(super) const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub(super) const NOT_COORDINATOR: i16 = 16;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupListing {
    pub group: String,
    pub protocol_type: String,
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Topic and partitions, when the assignment is the consumer protocol's.
    pub assignment: Vec<(String, Vec<i32>)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GroupInfo {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

pub(super) fn group_id(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

/// An OffsetCommit request's topics: `offsets` grouped by topic.
pub(super) fn commit_topics(offsets: &[CommittedOffset]) -> Vec<OffsetCommitRequestTopic> {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for o in offsets {
        let partition =
            OffsetCommitRequestPartition::default().with_partition_index(o.partition).with_committed_offset(o.offset);
        match topics.iter_mut().find(|t| t.name.as_str() == o.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                OffsetCommitRequestTopic::default().with_name(topic_name(&o.topic)).with_partitions(vec![partition]),
            ),
        }
    }
    topics
}

/// The first partition error of an OffsetCommit answer, 0 if none.
pub(super) fn commit_error(r: &OffsetCommitResponse) -> i16 {
    r.topics.iter().flat_map(|t| &t.partitions).map(|p| p.error_code).find(|&c| c != 0).unwrap_or(0)
}

impl Client {
    /// The address of `group`'s coordinator.
    pub(super) async fn coordinator(&mut self, group: &str) -> Result<String, Error> {
        let request = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
        let mut attempt = 0;
        loop {
            let response: FindCoordinatorResponse = self.any_broker(FIND_COORDINATOR_VERSION, &request, true).await?;
            if response.error_code == 0 {
                return Ok(format!("{}:{}", response.host, response.port));
            }
            let error = Error::kafka(format!("find the coordinator of {group}"), response.error_code, None);
            if attempt >= self.config.retries || response.error_code != COORDINATOR_NOT_AVAILABLE {
                return Err(error);
            }
            tokio::time::sleep(self.config.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Sends a request to `group`'s coordinator, looking it up again (with
    /// backoff) while `error_of` the answer says it moved or is loading. An
    /// answer may take `timeout` (a JoinGroup waits for the rebalance).
    pub(super) async fn send_to_coordinator<R: kafka_protocol::protocol::Request>(
        &mut self,
        group: &str,
        version: i16,
        request: &R,
        timeout: Duration,
        error_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response, Error> {
        let mut attempt = 0;
        loop {
            let addr = self.coordinator(group).await?;
            let response = self.request_within(&addr, version, request, timeout).await?;
            let code = error_of(&response);
            let retriable = matches!(code, COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR);
            if !retriable || attempt >= self.config.retries {
                return Ok(response);
            }
            tokio::time::sleep(self.config.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Every group of the cluster: each reachable broker lists the groups it coordinates.
    pub async fn list_groups(&mut self) -> Result<Vec<GroupListing>, Error> {
        self.refresh(None).await?;
        let addrs: Vec<String> = self.cluster.brokers.values().map(BrokerInfo::addr).collect();
        let mut groups = Vec::new();
        for addr in addrs {
            let response: ListGroupsResponse =
                match self.request(&addr, LIST_GROUPS_VERSION, &ListGroupsRequest::default()).await {
                    Ok(response) => response,
                    // A broker that is down coordinates nothing: its partitions' leaders moved.
                    Err(Error::Connect { .. }) => continue,
                    Err(e) => return Err(e),
                };
            if response.error_code != 0 {
                return Err(Error::kafka(format!("list groups at {addr}"), response.error_code, None));
            }
            groups.extend(response.groups.into_iter().map(|g| GroupListing {
                group: g.group_id.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups.dedup_by(|a, b| a.group == b.group);
        Ok(groups)
    }

    pub async fn describe_group(&mut self, group: &str) -> Result<GroupInfo, Error> {
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let response: DescribeGroupsResponse = self
            .send_to_coordinator(
                group,
                DESCRIBE_GROUPS_VERSION,
                &request,
                self.config.request_timeout,
                |r: &DescribeGroupsResponse| r.groups.first().map_or(0, |g| g.error_code),
            )
            .await?;
        let described =
            response.groups.into_iter().next().ok_or_else(|| Error::Protocol("no group described".into()))?;
        if described.error_code != 0 {
            return Err(Error::kafka(format!("describe group {group}"), described.error_code, None));
        }
        let consumer = described.protocol_type.as_str() == "consumer";
        Ok(GroupInfo {
            group: group.to_string(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members: described
                .members
                .into_iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: match consumer.then(|| decode_assignment(&m.member_assignment)).flatten() {
                        Some(assignment) => assignment.into_iter().collect(),
                        None => Vec::new(),
                    },
                })
                .collect(),
        })
    }

    /// Every offset `group` has committed.
    pub async fn committed_offsets(&mut self, group: &str) -> Result<Vec<CommittedOffset>, Error> {
        let request = OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(None);
        let timeout = self.config.request_timeout;
        let response: OffsetFetchResponse = self
            .send_to_coordinator(group, OFFSET_FETCH_VERSION, &request, timeout, |r: &OffsetFetchResponse| r.error_code)
            .await?;
        if response.error_code != 0 {
            return Err(Error::kafka(format!("fetch the offsets of {group}"), response.error_code, None));
        }
        let mut offsets = Vec::new();
        for t in response.topics {
            for p in t.partitions.into_iter().filter(|p| p.committed_offset >= 0) {
                offsets.push(CommittedOffset {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                });
            }
        }
        Ok(offsets)
    }

    /// Commits `offsets` for `group` as an administrator (no member, no
    /// generation): the coordinator accepts that only while the group has no members.
    pub async fn commit_offsets(&mut self, group: &str, offsets: &[CommittedOffset]) -> Result<(), Error> {
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(commit_topics(offsets));
        let timeout = self.config.request_timeout;
        let response = self.send_to_coordinator(group, OFFSET_COMMIT_VERSION, &request, timeout, commit_error).await?;
        match commit_error(&response) {
            0 => Ok(()),
            code => Err(Error::kafka(format!("commit offsets of {group}"), code, None)),
        }
    }
}
