//! Kafka request frames through the broker's framing and decoding path
//! (`FrameReader`, `request::parse`, `decode_bounded`).

use std::sync::atomic::{AtomicUsize, Ordering};

use arbitrary::Unstructured;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    DescribeQuorumRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, RequestHeader,
    RequestKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use raft_node::kafka::frame::FrameReader;
use raft_node::kafka::request::{self, Request, RequestError};
use raft_node::kafka::versions::{self, SupportedApi, SUPPORTED};

use super::mutate;
use crate::largest_allocation;

/// The frame cap the raw-stream mode reads with (the broker's is 100 MiB; the fuzzer's inputs
/// are far below either).
pub const MAX_FRAME: usize = 1 << 20;

/// What decoding one frame may allocate at once beyond twice the frame's size. kafka-protocol
/// reserves an array's capacity from its wire count; `decode_bounded` lets counts up to
/// `SMALL_COUNT` (65,536) through whatever follows, and the largest element of a supported
/// request is a few hundred bytes: a few MiB, bounded whatever the frame claims.
pub const ALLOWANCE: usize = 16 << 20;

/// The largest single allocation seen while decoding one frame, over the whole run.
pub static LARGEST_SEEN: AtomicUsize = AtomicUsize::new(0);

/// Property: for arbitrary byte streams (mode byte % 4 == 0) and for valid requests of every
/// supported API and version with structured mutations (the rest), framing and decoding never
/// panic, allocate at most `2 * frame + ALLOWANCE` bytes at once, and every frame is a request
/// consistent with the version table or a typed `RequestError` consistent with its cause. An
/// unmutated request decodes to exactly what was encoded; a decoded request re-encodes and
/// decodes to itself.
pub fn request_frames(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else { return };
    if mode % 4 == 0 {
        stream(rest);
    } else {
        structured(rest);
    }
}

/// Splits `bytes` into frames as a connection does, and decodes each.
fn stream(mut bytes: &[u8]) {
    let mut frames = FrameReader::new(MAX_FRAME);
    futures::executor::block_on(async {
        while frames.read_from(&mut bytes).await.expect("reading from memory") > 0 {
            while let Ok(Some(frame)) = frames.next_frame() {
                decode(frame);
            }
        }
    });
}

/// Decodes one frame payload and checks the outcome; returns the decoded request, if any.
/// (`key_of` knows the APIs supported when this was written; a later one is checked by
/// its round trip.)
fn decode(frame: Bytes) -> Option<(&'static SupportedApi, i16, RequestKind)> {
    let len = frame.len();
    let (parsed, largest) = largest_allocation(|| request::parse(frame.clone()));
    LARGEST_SEEN.fetch_max(largest, Ordering::Relaxed);
    assert!(largest <= 2 * len + ALLOWANCE, "decoding a {len}-byte frame allocated {largest} bytes at once");
    let raw_key = frame.get(..2).map(|k| i16::from_be_bytes([k[0], k[1]]));
    let raw_version = frame.get(2..4).map(|v| i16::from_be_bytes([v[0], v[1]]));
    match parsed {
        Ok(Request::Supported { api, header, body }) => {
            assert_eq!(Some(header.request_api_key), raw_key);
            assert_eq!(Some(header.request_api_version), raw_version);
            assert_eq!(header.request_api_key, api.key as i16);
            assert!(api.accepts(header.request_api_version), "{:?} v{}", api.key, header.request_api_version);
            if let Some(key) = key_of(&body) {
                assert_eq!(key, api.key, "{:?} decoded as {body:?}", api.key);
            }
            return Some((api, header.request_api_version, body));
        }
        Ok(Request::UnsupportedApiVersions { header }) => {
            assert_eq!(header.request_api_key, ApiKey::ApiVersions as i16);
            let api = versions::supported(ApiKey::ApiVersions).expect("ApiVersions is supported");
            assert!(!api.accepts(header.request_api_version));
        }
        Err(RequestError::TruncatedHeader(n)) => assert!(n < 4 && n == len),
        Err(RequestError::UnknownApiKey(key)) => {
            assert_eq!(Some(key), raw_key);
            assert!(ApiKey::try_from(key).is_err());
        }
        Err(RequestError::Header { api_key, api_version, .. }) => {
            assert_eq!((Some(api_key as i16), Some(api_version)), (raw_key, raw_version));
        }
        Err(RequestError::UnsupportedApi { api_key, .. }) => assert!(versions::supported(api_key).is_none()),
        Err(RequestError::UnsupportedVersion { api_key, api_version, .. }) => {
            let api = versions::supported(api_key).expect("a supported API");
            assert!(api_key != ApiKey::ApiVersions && !api.accepts(api_version));
        }
        Err(RequestError::Body { api_key, api_version, .. }) => {
            let api = versions::supported(api_key).expect("a supported API");
            assert!(api.accepts(api_version));
        }
    }
    None
}

/// A valid request of an API and version the fuzzer picks, then mutated.
fn structured(input: &[u8]) {
    let mut u = Unstructured::new(input);
    let Ok(api) = u.choose(SUPPORTED) else { return };
    let Ok(version) = u.int_in_range(api.min..=api.max) else { return };
    let Ok(correlation_id) = u.arbitrary::<i32>() else { return };
    let request = sample(api, version, &mut u);
    let mut payload = header(api.key, version, correlation_id);
    match &request {
        Some(request) => {
            let mut body = BytesMut::new();
            request.encode(&mut body, version).unwrap_or_else(|e| panic!("{:?} v{version} encodes: {e:#}", api.key));
            payload.extend_from_slice(&body);
        }
        None => payload.extend((0..small(&mut u, 64)).map(|_| int::<u8>(&mut u))),
    }

    let mut mutated = payload.clone();
    let changed = mutate(&mut u, &mut mutated);
    let decoded = decode(Bytes::from(mutated));
    if let (false, Some(request)) = (changed, request) {
        let exact = decoded.as_ref().map(|(_, version, body)| (*version, body));
        assert_eq!(exact, Some((version, &request)), "{:?} v{version} decodes exactly", api.key);
    }
    if let Some((api, version, body)) = decoded {
        // Whatever decodes is a request kafka-protocol encodes again, to the same request.
        let mut again = BytesMut::new();
        body.encode(&mut again, version).unwrap_or_else(|e| panic!("decoded {body:?} re-encodes: {e:#}"));
        let mut payload = header(api.key, version, correlation_id);
        payload.extend_from_slice(&again);
        let again = decode(Bytes::from(payload)).map(|(_, version, body)| (version, body));
        assert_eq!(again, Some((version, body)), "a decoded request round-trips");
    }
}

fn header(key: ApiKey, version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version)).expect("a header encodes");
    buf.to_vec()
}

fn key_of(body: &RequestKind) -> Option<ApiKey> {
    Some(match body {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        RequestKind::DescribeQuorum(_) => ApiKey::DescribeQuorum,
        _ => return None,
    })
}

fn small(u: &mut Unstructured<'_>, max: usize) -> usize {
    u.int_in_range(0..=max).unwrap_or(0)
}

fn text(u: &mut Unstructured<'_>) -> StrBytes {
    let s: String = u.arbitrary::<&str>().unwrap_or("t").chars().take(12).collect();
    StrBytes::from_string(if s.is_empty() { "t".to_owned() } else { s })
}

fn name(u: &mut Unstructured<'_>) -> TopicName {
    TopicName(text(u))
}

fn int<T: for<'a> arbitrary::Arbitrary<'a> + Default>(u: &mut Unstructured<'_>) -> T {
    u.arbitrary().unwrap_or_default()
}

/// A request of `api` with fields every supported version has, filled from `u`. (Fields
/// that exist only in some versions keep their defaults, so it encodes at all of them.)
fn sample(api: &SupportedApi, version: i16, u: &mut Unstructured<'_>) -> Option<RequestKind> {
    Some(match api.key {
        ApiKey::Produce => ProduceRequest::default()
            .with_acks(int(u))
            .with_timeout_ms(int(u))
            .with_topic_data(
                (0..small(u, 3))
                    .map(|_| {
                        TopicProduceData::default().with_name(name(u)).with_partition_data(
                            (0..small(u, 3))
                                .map(|_| {
                                    let records: Vec<u8> = (0..small(u, 80)).map(|_| int(u)).collect();
                                    PartitionProduceData::default()
                                        .with_index(int(u))
                                        .with_records(Some(Bytes::from(records)))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
            .into(),
        ApiKey::Fetch => FetchRequest::default()
            .with_max_wait_ms(int(u))
            .with_min_bytes(int(u))
            .with_max_bytes(int(u))
            .with_topics(
                (0..small(u, 3))
                    .map(|_| {
                        FetchTopic::default().with_topic(name(u)).with_partitions(
                            (0..small(u, 3))
                                .map(|_| {
                                    FetchPartition::default()
                                        .with_partition(int(u))
                                        .with_fetch_offset(int(u))
                                        .with_partition_max_bytes(int(u))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
            .into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default()
            .with_replica_id(BrokerId(int(u)))
            .with_topics(
                (0..small(u, 3))
                    .map(|_| {
                        ListOffsetsTopic::default().with_name(name(u)).with_partitions(
                            (0..small(u, 3))
                                .map(|_| {
                                    ListOffsetsPartition::default().with_partition_index(int(u)).with_timestamp(int(u))
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
            .into(),
        ApiKey::Metadata => {
            MetadataRequest::default()
                .with_topics((small(u, 4) > 0).then(|| {
                    (0..small(u, 3)).map(|_| MetadataRequestTopic::default().with_name(Some(name(u)))).collect()
                }))
                .into()
        }
        ApiKey::ApiVersions => ApiVersionsRequest::default().into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default()
            .with_timeout_ms(int(u))
            .with_topics(
                (0..small(u, 3))
                    .map(|_| {
                        CreatableTopic::default()
                            .with_name(name(u))
                            .with_num_partitions(int(u))
                            .with_replication_factor(int(u))
                            .with_configs(
                                (0..small(u, 2))
                                    .map(|_| {
                                        CreatableTopicConfig::default().with_name(text(u)).with_value(Some(text(u)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
            .into(),
        // Names moved into `topics` in v6.
        ApiKey::DeleteTopics if version < 6 => DeleteTopicsRequest::default()
            .with_timeout_ms(int(u))
            .with_topic_names((0..small(u, 3)).map(|_| name(u)).collect())
            .into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default()
            .with_timeout_ms(int(u))
            .with_topics((0..small(u, 3)).map(|_| DeleteTopicState::default().with_name(Some(name(u)))).collect())
            .into(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default()
            .with_resources(
                (0..small(u, 3))
                    .map(|_| {
                        DescribeConfigsResource::default()
                            .with_resource_type(int(u))
                            .with_resource_name(text(u))
                            .with_configuration_keys((small(u, 3) > 0).then(|| vec![text(u)]))
                    })
                    .collect(),
            )
            .into(),
        ApiKey::DescribeQuorum => DescribeQuorumRequest::default()
            .with_topics(
                (0..small(u, 2))
                    .map(|_| {
                        TopicData::default().with_topic_name(name(u)).with_partitions(
                            (0..small(u, 3)).map(|_| PartitionData::default().with_partition_index(int(u))).collect(),
                        )
                    })
                    .collect(),
            )
            .into(),
        // An API added to SUPPORTED without a sample here: fuzzed with raw bodies only.
        _ => return None,
    })
}
