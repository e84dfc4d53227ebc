//! The client's retries against a scripted broker on 127.0.0.1: a produce whose
//! last attempt cannot connect, after an earlier attempt reached a broker and
//! was answered with a retriable error, is reported as possibly written
//! (`Error::AfterDelivery`), never as a bare connect failure. A leader that
//! steps down after appending answers NOT_LEADER_OR_FOLLOWER, and its entry
//! may still commit: recording such a send as failed made a phantom write
//! (found by the cluster_schedules fuzz target).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{BrokerId, MetadataResponse, ProduceResponse, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use raft_node::client::records::ProducerRecord;
use raft_node::client::{Acks, Client, ClientConfig, Error};
use raft_node::kafka::{serve, Handler, Reply, ServerConfig, Turn};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const TOPIC: &str = "t";
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// Broker 1 at `port`, leading partition 0 of `t`, answering every produce
/// NOT_LEADER_OR_FOLLOWER and reporting each one on `produced`.
#[derive(Clone)]
struct SteppingDown {
    port: u16,
    produced: mpsc::UnboundedSender<()>,
}

impl Handler for SteppingDown {
    async fn handle(&self, _: &kafka_protocol::messages::RequestHeader, request: RequestKind, _: Turn) -> Reply {
        let name = || TopicName(StrBytes::from_static_str(TOPIC));
        match request {
            RequestKind::Metadata(_) => Reply::Response(ResponseKind::Metadata(
                MetadataResponse::default()
                    .with_brokers(vec![MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(i32::from(self.port))])
                    .with_topics(vec![MetadataResponseTopic::default().with_name(Some(name())).with_partitions(vec![
                        MetadataResponsePartition::default()
                            .with_partition_index(0)
                            .with_leader_id(BrokerId(1))
                            .with_replica_nodes(vec![BrokerId(1)])
                            .with_isr_nodes(vec![BrokerId(1)]),
                    ])]),
            )),
            RequestKind::Produce(_) => {
                let _ = self.produced.send(());
                Reply::Response(ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
                    TopicProduceResponse::default().with_name(name()).with_partition_responses(vec![
                        PartitionProduceResponse::default().with_index(0).with_error_code(NOT_LEADER_OR_FOLLOWER),
                    ]),
                ])))
            }
            _ => Reply::Close,
        }
    }
}

fn record() -> ProducerRecord {
    ProducerRecord { key: None, value: Some(Bytes::from_static(b"v")), timestamp: 0 }
}

fn config(addr: String) -> ClientConfig {
    ClientConfig { retries: 3, retry_backoff: Duration::from_millis(1), ..ClientConfig::new(vec![addr]) }
}

#[tokio::test]
async fn a_retried_produce_that_reached_a_broker_is_never_a_bare_connect_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (produced, mut produces) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let handler = SteppingDown { port: addr.port(), produced };
    let server = tokio::spawn(serve(listener, handler, ServerConfig::default(), logger, async {
        let _ = stopped.await;
    }));
    let mut client = Client::new(config(addr.to_string()));
    let records = [record()];
    let produce = client.produce(TOPIC, 0, &records, Acks::All);
    // The broker goes away once it has answered the first attempt: every
    // later attempt fails to connect.
    let stop_after_first = async {
        produces.recv().await.expect("the first attempt reaches the broker");
        let _ = stop.send(());
        server.await.expect("the server stops");
    };
    let (result, ()) = tokio::join!(produce, stop_after_first);
    match result {
        Err(Error::AfterDelivery(last)) => {
            assert!(matches!(*last, Error::Connect { .. } | Error::Unreachable(_)), "{last}")
        }
        other => panic!("expected AfterDelivery, got {other:?}"),
    }
}

#[tokio::test]
async fn a_produce_that_never_reached_a_broker_is_a_connect_failure() {
    // A port nothing listens on: bound, then closed.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut client = Client::new(config(addr.to_string()));
    let result = client.produce(TOPIC, 0, &[record()], Acks::All).await;
    assert!(matches!(result, Err(Error::Connect { .. } | Error::Unreachable(_))), "{result:?}");
}
