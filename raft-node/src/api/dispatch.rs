//! The seam between the wire layer and the API: each decoded request to the
//! method that answers it.

use std::future::Future;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

use super::KafkaApi;
use crate::kafka::{Handler, Reply, Turn};

impl Handler for KafkaApi {
    fn handle(&self, header: &RequestHeader, request: RequestKind, turn: Turn) -> impl Future<Output = Reply> + Send {
        let api = self.clone();
        let version = header.request_api_version;
        let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
        async move {
            let response = match request {
                RequestKind::Metadata(r) => ResponseKind::Metadata(api.metadata(&r)),
                RequestKind::Produce(r) => match api.produce(r, turn).await {
                    Some(response) => ResponseKind::Produce(response),
                    None => return Reply::NoResponse,
                },
                RequestKind::Fetch(r) => ResponseKind::Fetch(api.fetch(&r).await),
                RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(api.list_offsets(&r).await),
                RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(api.create_topics(&r).await),
                RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(api.delete_topics(&r).await),
                RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(api.describe_configs(&r)),
                RequestKind::DescribeQuorum(r) => ResponseKind::DescribeQuorum(api.describe_quorum(&r, version).await),
                RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(api.init_producer_id(&r).await),
                RequestKind::FindCoordinator(r) => ResponseKind::FindCoordinator(api.find_coordinator(&r, version)),
                RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(api.join_group(&r, version, &client_id).await),
                RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(api.sync_group(&r, version).await),
                RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(api.heartbeat(&r).await),
                RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(api.leave_group(&r).await),
                RequestKind::OffsetCommit(r) => ResponseKind::OffsetCommit(api.offset_commit(&r).await),
                RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(api.offset_fetch(&r, version).await),
                RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(api.describe_groups(&r, version).await),
                RequestKind::ListGroups(r) => ResponseKind::ListGroups(api.list_groups(&r, version)),
                RequestKind::AlterPartitionReassignments(r) => {
                    ResponseKind::AlterPartitionReassignments(api.alter_partition_reassignments(&r).await)
                }
                RequestKind::ListPartitionReassignments(r) => {
                    ResponseKind::ListPartitionReassignments(api.list_partition_reassignments(&r))
                }
                RequestKind::IncrementalAlterConfigs(r) => {
                    ResponseKind::IncrementalAlterConfigs(api.incremental_alter_configs(&r).await)
                }
                RequestKind::UnregisterBroker(r) => ResponseKind::UnregisterBroker(api.unregister_broker(&r).await),
                // The wire layer admits only the APIs of its versions table;
                // anything else reaching here is closed, as Kafka does.
                _ => return Reply::Close,
            };
            Reply::Response(response)
        }
    }
}
