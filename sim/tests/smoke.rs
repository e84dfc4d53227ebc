//! The real broker code, three brokers on madsim's simulated nodes, network
//! and clock, each on its own faulty disk: a client creates a topic, produces
//! with acks=all and reads everything back over the Kafka protocol. The same
//! seed must give a byte-identical trace.
#![cfg(madsim)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, FetchRequest, MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use log_core::batch::testing::{encode, BatchSpec};
use log_core::batch::validate_record_set;
use madsim::runtime::{Handle, Runtime};
use raft_node::config::{BrokerConfig, ClusterMember, KafkaSection, RaftSection};
use raft_node::kafka::client::Connection;
use raft_node::storage::FaultyDisk;
use sim::trace::Trace;

const BROKERS: u8 = 3;
const BATCHES: i64 = 20;
const TOPIC: &str = "sim";

/// Simulated addresses, from the documentation range: nothing leaves the process.
fn address(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from([192, 0, 2, host]), port)
}

fn broker_config(id: u8) -> BrokerConfig {
    BrokerConfig {
        node_id: u64::from(id),
        data_dir: "unused".into(),
        kafka: KafkaSection { listen: address(id, 9092), advertised: None },
        raft: RaftSection {
            listen: address(id, 19092),
            advertised: None,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
        },
        cluster: (1..=BROKERS).map(|j| ClusterMember { id: u64::from(j), raft: address(j, 19092) }).collect(),
        leadership: Default::default(),
        moves: Default::default(),
        storage: Default::default(),
        groups: Default::default(),
        logging: Default::default(),
    }
}

fn name() -> TopicName {
    TopicName(StrBytes::from_string(TOPIC.to_string()))
}

async fn metadata(connection: &mut Connection) -> MetadataResponse {
    connection.send(9, &MetadataRequest::default().with_topics(None)).await.expect("metadata")
}

/// How long the client waits between polls of the cluster, in simulated time.
const POLL: Duration = Duration::from_millis(100);

async fn connect(broker: u8) -> Connection {
    loop {
        if let Ok(connection) = Connection::connect(address(broker, 9092), "sim").await {
            return connection;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Partition 0's leader, once the topic exists and has one.
fn leader_of_partition_0(meta: &MetadataResponse) -> Option<i32> {
    let partition = meta.topics.iter().find(|t| t.name == Some(name()))?.partitions.first()?;
    (partition.leader_id.0 > 0).then_some(partition.leader_id.0)
}

/// The client: waits for the cluster, creates the topic, produces batches to
/// partition 0's leader with acks=all, and reads them back. Returns the
/// acknowledged base offsets. (Waits are polls in simulated time; the test
/// fails if the simulation never gets there.)
async fn workload() -> Vec<i64> {
    let mut any = connect(1).await;
    while metadata(&mut any).await.brokers.len() < usize::from(BROKERS) {
        tokio::time::sleep(POLL).await;
    }
    let topic = CreatableTopic::default().with_name(name()).with_num_partitions(3).with_replication_factor(3);
    let created = any
        .send(5, &CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(10_000))
        .await
        .expect("create topics");
    assert_eq!(created.topics[0].error_code, 0, "{:?}", created.topics[0].error_message);
    let leader = loop {
        if let Some(leader) = leader_of_partition_0(&metadata(&mut any).await) {
            break leader;
        }
        tokio::time::sleep(POLL).await;
    };
    let mut to_leader = connect(leader as u8).await;
    let mut offsets = Vec::new();
    for i in 0..BATCHES {
        let records = encode(&BatchSpec { record_count: 2, payload: vec![i as u8; 32], ..Default::default() });
        let data = PartitionProduceData::default().with_index(0).with_records(Some(records));
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default().with_name(name()).with_partition_data(vec![data])]);
        let response = to_leader.send(7, &request).await.expect("produce");
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "produce {i}");
        offsets.push(partition.base_offset);
    }
    let fetch =
        FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_bytes(1 << 20).with_min_bytes(1).with_topics(
            vec![FetchTopic::default().with_topic(name()).with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])],
        );
    let response = to_leader.send(11, &fetch).await.expect("fetch");
    let data = &response.responses[0].partitions[0];
    assert_eq!(data.high_watermark, 2 * BATCHES);
    let batches = validate_record_set(data.records.clone().unwrap_or_default(), 1 << 20).expect("stored batches");
    let read: Vec<i64> = batches.iter().map(|b| b.base_offset()).collect();
    assert_eq!(read, offsets, "every acknowledged batch is read back at its offset");
    offsets
}

/// Runs the cluster and the workload under `seed`; returns the trace and the offsets.
fn run(seed: u64) -> (Vec<u8>, Vec<i64>) {
    let mut runtime = Runtime::with_seed_and_config(seed, madsim::Config::default());
    // A stuck cluster fails the test in bounded simulated time.
    runtime.set_time_limit(Duration::from_secs(120));
    let trace = Trace::default();
    let logger = trace.logger();
    let trace_on_failure = trace.clone();
    let run = std::panic::AssertUnwindSafe(|| {
        runtime.block_on(async move {
            let handle = Handle::current();
            for id in 1..=BROKERS {
                let disk = FaultyDisk::new(seed ^ u64::from(id));
                let logger = logger.clone();
                handle
                    .create_node()
                    .name(format!("broker-{id}"))
                    .ip(address(id, 0).ip())
                    .init(move || {
                        let (disk, logger) = (disk.clone(), logger.clone());
                        async move {
                            let ended = raft_node::broker::run_on(
                                broker_config(id),
                                Arc::new(disk),
                                logger,
                                std::future::pending(),
                            )
                            .await;
                            panic!("broker {id} stopped: {ended:?}");
                        }
                    })
                    .build();
            }
            let client = handle.create_node().name("client").ip(address(100, 0).ip()).build();
            client.spawn(workload()).await.expect("the workload finishes")
        })
    });
    let offsets = std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        // The run is over, so writing a real file is fine here.
        let path = std::env::temp_dir().join(format!("keel-smoke-{seed}.trace"));
        let written = std::fs::write(&path, trace_on_failure.contents());
        eprintln!("seed {seed} failed; its trace: {} ({written:?})", path.display());
        std::panic::resume_unwind(panic)
    });
    (trace.contents(), offsets)
}

#[test]
fn a_simulated_cluster_acknowledges_and_serves_every_batch() {
    let (trace, offsets) = run(7);
    assert_eq!(offsets, (0..BATCHES).map(|i| 2 * i).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&trace);
    // The metadata group and the topic's three partitions each elected a leader.
    assert!(text.matches("became leader at term").count() >= 4, "the trace records the elections");
}

#[test]
fn the_same_seed_gives_a_byte_identical_trace() {
    let (first, _) = run(11);
    let (second, _) = run(11);
    assert!(first == second, "traces of seed 11 differ; first differing byte at {:?}", {
        first.iter().zip(&second).position(|(a, b)| a != b)
    });
    let (other, _) = run(12);
    assert!(other != first, "a different seed should schedule differently");
}
