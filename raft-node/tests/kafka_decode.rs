//! Request decoding: exact on valid requests, an error (never a panic or an abort) on anything else.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, ApiVersionsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, DescribeQuorumRequest, FetchRequest, FindCoordinatorRequest,
    GroupId, HeartbeatRequest, IncrementalAlterConfigsRequest, InitProducerIdRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, RequestHeader, RequestKind, SyncGroupRequest, TopicName,
    UnregisterBrokerRequest,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use raft_node::kafka::frame::FrameReader;
use raft_node::kafka::request::{self, Request, RequestError};
use raft_node::kafka::versions::SUPPORTED;
use raft_node::kafka::DecodeError;

fn name(s: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(s))
}

fn group(s: &'static str) -> GroupId {
    GroupId(StrBytes::from_static_str(s))
}

/// A request of `api_key` with some content in fields every supported version has, and
/// int32 fields above what the frame holds (so decoding takes its two-pass path).
fn sample(api_key: ApiKey) -> RequestKind {
    match api_key {
        ApiKey::Produce => ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(120_000)
            .with_topic_data(vec![TopicProduceData::default().with_name(name("t")).with_partition_data(vec![
                PartitionProduceData::default().with_index(3).with_records(Some(Bytes::from(vec![7; 100]))),
            ])])
            .into(),
        ApiKey::Fetch => FetchRequest::default()
            .with_max_wait_ms(500)
            .with_max_bytes(52_428_800)
            .with_topics(vec![FetchTopic::default().with_topic(name("t")).with_partitions(vec![
                FetchPartition::default().with_partition(1).with_fetch_offset(42).with_partition_max_bytes(1_048_576),
            ])])
            .into(),
        ApiKey::ListOffsets => ListOffsetsRequest::default()
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])])
            .into(),
        ApiKey::Metadata => MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("a"))),
                MetadataRequestTopic::default().with_name(Some(name("b"))),
            ]))
            .into(),
        ApiKey::ApiVersions => ApiVersionsRequest::default().into(),
        ApiKey::CreateTopics => CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(name("t"))
                .with_num_partitions(3)
                .with_replication_factor(1)])
            .into(),
        ApiKey::DeleteTopics => DeleteTopicsRequest::default().with_timeout_ms(300_000).into(),
        // One partition moved, one move cancelled (no replicas).
        ApiKey::AlterPartitionReassignments => AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![ReassignableTopic::default().with_name(name("t")).with_partitions(vec![
                ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(1), BrokerId(4)])),
                ReassignablePartition::default().with_partition_index(1).with_replicas(None),
            ])])
            .into(),
        ApiKey::ListPartitionReassignments => ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
                .with_name(name("t"))
                .with_partition_indexes(vec![0, 1])]))
            .into(),
        ApiKey::UnregisterBroker => UnregisterBrokerRequest::default().with_broker_id(BrokerId(4)).into(),
        ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::default()
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("2"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("leader.replication.throttled.rate"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("1048576")))])])
            .into(),
        ApiKey::DescribeConfigs => DescribeConfigsRequest::default()
            .with_resources(vec![DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))])
            .into(),
        ApiKey::DescribeQuorum => DescribeQuorumRequest::default()
            .with_topics(vec![TopicData::default()
                .with_topic_name(name("__cluster_metadata"))
                .with_partitions(vec![PartitionData::default().with_partition_index(0)])])
            .into(),
        // Not transactional; the KIP-360 id and epoch exist from v3 only, so they stay unset.
        ApiKey::InitProducerId => {
            InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000).into()
        }
        // The group APIs: only fields every supported version has (FindCoordinator's
        // key and OffsetFetch's group moved between versions, so they stay unset).
        ApiKey::FindCoordinator => FindCoordinatorRequest::default().into(),
        ApiKey::JoinGroup => JoinGroupRequest::default()
            .with_group_id(group("g"))
            .with_session_timeout_ms(45_000)
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"meta"))])
            .into(),
        ApiKey::SyncGroup => SyncGroupRequest::default()
            .with_group_id(group("g"))
            .with_generation_id(3)
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_static_str("m-1"))
                .with_assignment(Bytes::from_static(b"plan"))])
            .into(),
        ApiKey::Heartbeat => HeartbeatRequest::default()
            .with_group_id(group("g"))
            .with_generation_id(3)
            .with_member_id(StrBytes::from_static_str("m-1"))
            .into(),
        ApiKey::LeaveGroup => LeaveGroupRequest::default().with_group_id(group("g")).into(),
        ApiKey::OffsetCommit => OffsetCommitRequest::default()
            .with_group_id(group("g"))
            .with_generation_id_or_member_epoch(3)
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_topics(vec![OffsetCommitRequestTopic::default().with_name(name("t")).with_partitions(vec![
                OffsetCommitRequestPartition::default().with_partition_index(2).with_committed_offset(42),
            ])])
            .into(),
        ApiKey::OffsetFetch => OffsetFetchRequest::default().into(),
        ApiKey::DescribeGroups => DescribeGroupsRequest::default().with_groups(vec![group("g")]).into(),
        ApiKey::ListGroups => ListGroupsRequest::default().into(),
        other => panic!("no sample for {other:?}"),
    }
}

/// A frame payload: the header the key and version call for, then `body`.
fn payload(api_key: ApiKey, version: i16, body: &[u8]) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("t")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, api_key.request_header_version(version)).unwrap();
    buf.put_slice(body);
    buf.freeze()
}

fn body_error(parsed: Result<Request, RequestError>) -> DecodeError {
    match parsed {
        Err(RequestError::Body { error, .. }) => error,
        other => panic!("expected a body error, got {other:?}"),
    }
}

#[test]
fn supported_versions_lie_within_what_kafka_protocol_speaks() {
    for api in SUPPORTED {
        let speaks = api.key.valid_versions();
        assert!(speaks.min <= api.min && api.max <= speaks.max, "{:?} {}..={} vs {speaks}", api.key, api.min, api.max);
        assert!(api.advertised_min <= api.min);
    }
}

#[test]
fn valid_requests_decode_exactly_at_every_supported_version() {
    for api in SUPPORTED {
        for version in api.min..=api.max {
            let request = sample(api.key);
            let mut body = BytesMut::new();
            request.encode(&mut body, version).unwrap();
            match request::parse(payload(api.key, version, &body)) {
                Ok(Request::Supported { header, body, .. }) => {
                    assert_eq!((header.request_api_key, header.request_api_version), (api.key as i16, version));
                    assert_eq!(header.correlation_id, 9);
                    assert_eq!(body, request, "{:?} v{version}", api.key);
                }
                other => panic!("{:?} v{version}: {other:?}", api.key),
            }
        }
    }
}

/// Produce v3 whose topic array claims `i32::MAX` entries, in a 14-byte body.
fn produce_v3_with_forged_topic_count() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // no transactional id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks
    body.extend_from_slice(&30_000i32.to_be_bytes()); // timeout
    body.extend_from_slice(&i32::MAX.to_be_bytes()); // topic count
    body
}

#[test]
fn forged_int32_array_count_is_an_error() {
    let body = produce_v3_with_forged_topic_count();
    assert!(matches!(body_error(request::parse(payload(ApiKey::Produce, 3, &body))), DecodeError::Malformed(_)));
}

#[test]
fn forged_compact_array_count_is_an_error() {
    let forged = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let error = body_error(request::parse(payload(ApiKey::Metadata, 12, &forged)));
    assert_eq!(error, DecodeError::ForgedLength { claimed: u64::from(u32::MAX), left: 0 });

    // Nested: Produce v9, one topic whose partition array claims 2^28 entries.
    let mut body = vec![0x00]; // no transactional id
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.extend_from_slice(&30_000i32.to_be_bytes());
    body.extend_from_slice(&[0x02, 0x02, b't', 0x80, 0x80, 0x80, 0x80, 0x01]);
    let error = body_error(request::parse(payload(ApiKey::Produce, 9, &body)));
    assert!(matches!(error, DecodeError::ForgedLength { claimed: 0x1000_0000, .. }), "{error:?}");
}

/// kafka-protocol alone, on the same 14 bytes, reserves 2^31 topics (hundreds of GB): the
/// allocation fails and the process aborts (SIGABRT, not a panic) wherever that exceeds
/// memory under Linux's default overcommit heuristic. Ignored because it kills the test run;
/// run it alone to see why `decode_bounded` exists:
/// `cargo test -p raft-node --test kafka_decode -- --ignored unguarded`
#[test]
#[ignore = "aborts the test process"]
fn unguarded_decode_aborts_on_forged_array_count() {
    let mut body = Bytes::from(produce_v3_with_forged_topic_count());
    let _ = RequestKind::decode(ApiKey::Produce, &mut body, 3);
}

#[test]
fn arbitrary_byte_streams_never_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    bolero::check!().with_type::<Vec<u8>>().for_each(|stream: &Vec<u8>| {
        runtime.block_on(async {
            let mut frames = FrameReader::new(1 << 16);
            let mut input = stream.as_slice();
            while frames.read_from(&mut input).await.unwrap() > 0 {
                while let Ok(Some(frame)) = frames.next_frame() {
                    let _ = request::parse(frame);
                }
            }
        })
    });
}

/// Arbitrary bodies under a valid header of a supported API and version: decoding is safe, and
/// whenever it succeeds kafka-protocol alone (now known to meet only honest counts) agrees.
#[test]
fn arbitrary_bodies_decode_safely_and_as_kafka_protocol_does() {
    bolero::check!().with_type::<Vec<u8>>().for_each(|input: &Vec<u8>| {
        let [pick, v0, v1, body @ ..] = input.as_slice() else { return };
        let api = &SUPPORTED[usize::from(*pick) % SUPPORTED.len()];
        let span = u16::try_from(api.max - api.min + 1).unwrap();
        let version = api.min + i16::try_from(u16::from_be_bytes([*v0, *v1]) % span).unwrap();
        match request::parse(payload(api.key, version, body)) {
            Ok(Request::Supported { body: decoded, .. }) => {
                let raw = RequestKind::decode(api.key, &mut Bytes::copy_from_slice(body), version);
                assert_eq!(raw.ok(), Some(decoded));
            }
            Ok(other) => panic!("{other:?}"),
            Err(RequestError::Body { .. }) => {}
            Err(other) => panic!("the header is valid: {other:?}"),
        }
    });
}
