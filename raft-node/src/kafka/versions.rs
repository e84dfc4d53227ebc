//! The APIs and versions this broker speaks (the one place to extend), and its ApiVersions answer.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest, DescribeQuorumRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, RequestKind, ResponseKind, SyncGroupRequest,
    UnregisterBrokerRequest,
};

use super::bounded_decode::{decode_bounded, DecodeError};

/// One API and the versions of it we speak.
#[derive(Debug)]
pub struct SupportedApi {
    pub key: ApiKey,
    /// The lowest version advertised in ApiVersions; may be below `min` (see Produce).
    pub advertised_min: i16,
    /// The versions accepted; a request outside them closes the connection, as in Kafka.
    pub min: i16,
    pub max: i16,
    decode: fn(&mut Bytes, i16) -> Result<RequestKind, DecodeError>,
    is_response: fn(&ResponseKind) -> bool,
}

impl SupportedApi {
    pub fn accepts(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }

    /// Decodes a request body of this API at `version`.
    pub fn decode(&self, body: &mut Bytes, version: i16) -> Result<RequestKind, DecodeError> {
        (self.decode)(body, version)
    }

    /// Whether `response` answers this API.
    pub fn is_response(&self, response: &ResponseKind) -> bool {
        (self.is_response)(response)
    }
}

macro_rules! api {
    ($name:ident, $request:ty, $min:literal..=$max:literal) => {
        api!($name, $request, advertised $min, $min..=$max)
    };
    ($name:ident, $request:ty, advertised $advertised:literal, $min:literal..=$max:literal) => {
        SupportedApi {
            key: ApiKey::$name,
            advertised_min: $advertised,
            min: $min,
            max: $max,
            decode: |body, version| Ok(RequestKind::$name(decode_bounded::<$request>(body, version)?)),
            is_response: |response| matches!(response, ResponseKind::$name(_)),
        }
    };
}

/// Every range lies within what kafka-protocol 0.18 encodes and decodes (a test checks).
pub static SUPPORTED: &[SupportedApi] = &[
    // Kafka advertises Produce from v0 and librdkafka disables compression when it does not
    // see v0..v2 advertised; kafka-protocol decodes from v3, as Kafka 4 does.
    api!(Produce, ProduceRequest, advertised 0, 3..=9),
    api!(Fetch, FetchRequest, 4..=12),
    api!(ListOffsets, ListOffsetsRequest, 1..=7),
    api!(Metadata, MetadataRequest, 1..=12),
    api!(ApiVersions, ApiVersionsRequest, 0..=3),
    api!(CreateTopics, CreateTopicsRequest, 2..=7),
    api!(DeleteTopics, DeleteTopicsRequest, 1..=6),
    api!(DescribeConfigs, DescribeConfigsRequest, 1..=4),
    api!(DescribeQuorum, DescribeQuorumRequest, 0..=2),
    // v5 only tells a transactional client that the broker bumps epochs per transaction (KIP-890).
    api!(InitProducerId, InitProducerIdRequest, 0..=4),
    // Consumer groups, classic protocol (KIP-848's ConsumerGroupHeartbeat is not spoken).
    api!(FindCoordinator, FindCoordinatorRequest, 0..=4),
    api!(JoinGroup, JoinGroupRequest, 0..=9),
    api!(SyncGroup, SyncGroupRequest, 0..=5),
    api!(Heartbeat, HeartbeatRequest, 0..=4),
    api!(LeaveGroup, LeaveGroupRequest, 0..=5),
    api!(OffsetCommit, OffsetCommitRequest, 2..=8),
    api!(OffsetFetch, OffsetFetchRequest, 1..=8),
    api!(DescribeGroups, DescribeGroupsRequest, 0..=5),
    api!(ListGroups, ListGroupsRequest, 0..=4),
    // Moving partition replicas (KIP-455), through the metadata group.
    api!(AlterPartitionReassignments, AlterPartitionReassignmentsRequest, 0..=1),
    api!(ListPartitionReassignments, ListPartitionReassignmentsRequest, 0..=0),
    // The move throttle, set at run time (leader.replication.throttled.rate).
    api!(IncrementalAlterConfigs, IncrementalAlterConfigsRequest, 0..=1),
    // Taking a broker out of the cluster once its replicas have moved off.
    api!(UnregisterBroker, UnregisterBrokerRequest, 0..=0),
];

pub fn supported(key: ApiKey) -> Option<&'static SupportedApi> {
    SUPPORTED.iter().find(|api| api.key == key)
}

/// The answer to an ApiVersions request at `version`, and the version to encode it at.
///
/// A version we do not speak gets UNSUPPORTED_VERSION in the v0 format, which every client
/// reads, still listing what we speak so the client retries with a version we do (KIP-511).
pub fn api_versions_response(version: i16) -> (ApiVersionsResponse, i16) {
    let api_keys = SUPPORTED
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.advertised_min)
                .with_max_version(api.max)
        })
        .collect();
    let response = ApiVersionsResponse::default().with_api_keys(api_keys);
    match supported(ApiKey::ApiVersions) {
        Some(api) if api.accepts(version) => (response, version),
        _ => (response.with_error_code(ResponseError::UnsupportedVersion.code()), 0),
    }
}
