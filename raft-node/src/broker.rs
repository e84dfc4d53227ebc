//! One broker, assembled: the disk, the transport to its peers, the node
//! with its raft groups, and the Kafka listener.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use slog::{info, Logger};
use tokio::net::TcpListener;

use crate::api::KafkaApi;
use crate::config::BrokerConfig;
use crate::kafka::{serve, ServerConfig};
use crate::node::{ClockRate, LeaderBalance, Node, NodeConfig, NodeError};
use crate::replica::{AppliedHook, RaftSettings};
use crate::storage::{Disk, FileDisk, LogConfig};
use crate::transport::{Transport, TransportConfig};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{0}")]
    Planted(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrokerError {
    let what = what.into();
    move |source| BrokerError::Io { what, source }
}

/// Runs a broker on files in its data directory until `shutdown` resolves:
/// then it stops accepting connections, lets requests in flight finish, and
/// stops its groups (every entry a client was told about is already synced).
pub async fn run(
    config: BrokerConfig,
    logger: Logger,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BrokerError> {
    let disk = FileDisk::new(&config.data_dir).map_err(io(format!("data directory {}", config.data_dir.display())))?;
    run_on(config, Arc::new(disk), logger, shutdown).await
}

/// Runs a broker on `disk` (the simulator passes its faulty disk).
pub async fn run_on(
    config: BrokerConfig,
    disk: Arc<dyn Disk>,
    logger: Logger,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BrokerError> {
    run_on_with(config, disk, Instruments::default(), logger, shutdown).await
}

/// What the simulator hands a broker beyond its config; production runs with
/// the default.
#[derive(Clone, Debug, Default)]
pub struct Instruments {
    /// Link faults (loss, duplication, delay, partitions) and the seed of
    /// the reconnect jitter.
    pub transport: TransportConfig,
    /// Seeds the broker's election jitter; by default the broker id.
    pub seed: Option<u64>,
    /// Sees every committed entry applied on this broker.
    pub on_applied: Option<AppliedHook>,
    /// Skews the broker's tick rate.
    pub clock: Option<Arc<ClockRate>>,
}

/// [`run_on`], instrumented by the caller (the simulator).
pub async fn run_on_with(
    config: BrokerConfig,
    disk: Arc<dyn Disk>,
    instruments: Instruments,
    logger: Logger,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BrokerError> {
    let node_id = config.node_id;
    let logger = logger.new(slog::o!("broker" => node_id));
    if let Some(bug) = crate::planted::from_env().map_err(BrokerError::Planted)? {
        slog::warn!(logger, "this broker has a planted bug: it is wrong on purpose"; "bug" => bug.name());
    }
    let raft_listener =
        TcpListener::bind(config.raft.listen).await.map_err(io(format!("raft listener {}", config.raft.listen)))?;
    let kafka_listener =
        TcpListener::bind(config.kafka.listen).await.map_err(io(format!("kafka listener {}", config.kafka.listen)))?;
    let peers: BTreeMap<u64, _> = config.cluster.iter().filter(|m| m.id != node_id).map(|m| (m.id, m.raft)).collect();
    let (transport, inbound) = Transport::start(node_id, raft_listener, peers, instruments.transport, logger.clone())
        .map_err(io("transport"))?;
    let (advertised_host, advertised_port) = config.advertised();
    let node_config = NodeConfig {
        node_id,
        founders: config.cluster.iter().map(|m| (m.id, m.raft)).collect(),
        raft_address: config.raft_address(),
        advertised_host,
        advertised_port,
        raft: RaftSettings {
            election_ticks: config.raft.election_ticks,
            heartbeat_ticks: config.raft.heartbeat_ticks,
            ..RaftSettings::default()
        },
        log: LogConfig { segment_bytes: config.storage.segment_bytes, ..LogConfig::default() },
        tick: Duration::from_millis(config.raft.tick_ms),
        retention_check_ticks: (config.storage.retention_check_ms / config.raft.tick_ms).max(1),
        offsets_partitions: config.groups.offsets_partitions,
        leader_balance: config.leadership.auto_rebalance.then(|| LeaderBalance {
            check_ticks: (config.leadership.check_ms / config.raft.tick_ms).max(1),
            max_transfers: config.leadership.max_transfers,
        }),
        move_throttle: config.moves.throttle_bytes_per_sec,
        auto_rebalance_ticks: config
            .moves
            .auto_rebalance
            .then(|| (config.moves.auto_rebalance_check_ms / config.raft.tick_ms).max(1)),
        seed: instruments.seed.unwrap_or(node_id),
        on_applied: instruments.on_applied,
        clock: instruments.clock,
    };
    let (node, handle) = Node::open(node_config, disk, transport.clone(), &logger)?;
    let api = KafkaApi::new(handle, node_id);
    let mut node_task = tokio::spawn(node.run(inbound));
    info!(logger, "broker started"; "kafka" => %config.kafka.listen, "raft" => %config.raft.listen,
        "data" => %config.data_dir.display());
    let served = serve(kafka_listener, api, ServerConfig::default(), logger.clone(), shutdown);
    let result = tokio::select! {
        biased; // replayable in the simulation
        () = served => Ok(()),
        ended = &mut node_task => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BrokerError::Node(e)),
            Err(e) => Err(BrokerError::Io { what: "node task".into(), source: std::io::Error::other(e.to_string()) }),
        },
    };
    // The API's handles are gone with the server, so the node's request
    // channel closes; the transport closing ends it in any case.
    transport.shutdown().await;
    let _ = node_task.await;
    info!(logger, "broker stopped");
    result
}
