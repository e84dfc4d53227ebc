//! The brokers on madsim nodes, each on a faulty disk that outlives the node,
//! so a kill loses only what was not synced.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use madsim::runtime::{Handle, NodeHandle};
use raft_node::broker::Instruments;
use raft_node::config::{BrokerConfig, ClusterMember, GroupsSection, KafkaSection, MovesSection, RaftSection};
use raft_node::node::ClockRate;
use raft_node::storage::FaultyDisk;
use raft_node::transport::TransportConfig;
use slog::{error, Logger};

use crate::faults::Network;
use crate::invariants::CommittedEntries;

/// Simulated addresses, from the documentation range: nothing leaves the process.
pub fn address(host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from([192, 0, 2, host]), port)
}

pub const KAFKA_PORT: u16 = 9092;
pub const RAFT_PORT: u16 = 19092;
/// The workload's node.
pub const CLIENT_HOST: u8 = 100;

/// Broker `id`'s config; the founders are `1..=founders` (a higher id joins).
fn broker_config(id: u8, founders: u8, auto_rebalance: bool) -> BrokerConfig {
    BrokerConfig {
        node_id: u64::from(id),
        data_dir: "unused".into(),
        kafka: KafkaSection { listen: address(id, KAFKA_PORT), advertised: None },
        raft: RaftSection {
            listen: address(id, RAFT_PORT),
            advertised: None,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
        },
        cluster: (1..=founders).map(|j| ClusterMember { id: u64::from(j), raft: address(j, RAFT_PORT) }).collect(),
        leadership: Default::default(),
        // Low enough that the catch-up of the replicas a move adds is held
        // back (a simulated log is small): the throttle's path runs under faults.
        // The automatic rebalance looks every 2 s: the default 30 s is most of a run.
        moves: MovesSection { throttle_bytes_per_sec: 64 << 10, auto_rebalance, auto_rebalance_check_ms: 2000 },
        storage: Default::default(),
        // The workload has one consumer group, so one coordinator partition: each is a raft
        // group of three replicas ticking through every run (eight made the sweep a third slower).
        groups: GroupsSection { offsets_partitions: 1 },
        logging: Default::default(),
    }
}

pub struct Cluster {
    nodes: Vec<NodeHandle>,
    disks: Vec<FaultyDisk>,
    /// Each broker's tick rate; it outlives restarts, as a machine's clock would.
    clocks: Vec<Arc<ClockRate>>,
    /// Brokers whose `run_on` returned since their last (re)start, with what it returned.
    exits: Arc<Mutex<BTreeMap<u8, String>>>,
    /// Brokers `1..=founders` formed the cluster; the others join it.
    founders: u8,
    handle: Handle,
}

impl Cluster {
    /// Starts brokers `1..=brokers`, and with `join_at` broker `brokers + 1`
    /// at that time, which joins the running cluster (its node exists from
    /// the start, so the nemesis may kill it before); their transports
    /// consult `network`, and `committed` sees every entry they apply;
    /// `auto_rebalance` turns on every broker's automatic rebalance.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        handle: &Handle,
        seed: u64,
        brokers: u8,
        join_at: Option<tokio::time::Instant>,
        auto_rebalance: bool,
        network: Arc<Network>,
        committed: &Arc<CommittedEntries>,
        logger: &Logger,
    ) -> Cluster {
        let exits = Arc::new(Mutex::new(BTreeMap::new()));
        let mut nodes = Vec::new();
        let mut disks = Vec::new();
        let mut clocks = Vec::new();
        let joiners = u8::from(join_at.is_some());
        for id in 1..=brokers + joiners {
            let join_at = join_at.filter(|_| id > brokers);
            let disk = FaultyDisk::new(seed.rotate_left(8) ^ u64::from(id));
            let (logger, exits, network, node_disk) = (logger.clone(), exits.clone(), network.clone(), disk.clone());
            let committed = committed.clone();
            let clock = Arc::new(ClockRate::default());
            clocks.push(clock.clone());
            let node = handle
                .create_node()
                .name(format!("broker-{id}"))
                .ip(address(id, 0).ip())
                .init(move || {
                    let (disk, logger, exits) = (node_disk.clone(), logger.clone(), exits.clone());
                    let instruments = Instruments {
                        transport: TransportConfig {
                            seed: seed ^ (u64::from(id) << 32),
                            faults: Some(network.clone()),
                            ..TransportConfig::default()
                        },
                        // Election jitter differs from seed to seed, not only between brokers.
                        seed: Some(seed.rotate_left(16) ^ u64::from(id)),
                        on_applied: Some(committed.hook(id)),
                        clock: Some(clock.clone()),
                    };
                    async move {
                        if let Some(at) = join_at {
                            tokio::time::sleep_until(at).await;
                        }
                        let ended = raft_node::broker::run_on_with(
                            broker_config(id, brokers, auto_rebalance),
                            Arc::new(disk),
                            instruments,
                            logger.clone(),
                            std::future::pending(),
                        )
                        .await;
                        let ended = match ended {
                            Ok(()) => "stopped".to_string(),
                            Err(e) => format!("failed: {e}"),
                        };
                        error!(logger, "broker exited"; "broker" => id, "result" => &ended);
                        exits.lock().unwrap_or_else(PoisonError::into_inner).insert(id, ended);
                    }
                })
                .build();
            nodes.push(node);
            disks.push(disk);
        }
        Cluster { nodes, disks, clocks, exits, founders: brokers, handle: handle.clone() }
    }

    pub fn ids(&self) -> Vec<u8> {
        (1..=self.nodes.len() as u8).collect()
    }

    pub fn disk(&self, id: u8) -> &FaultyDisk {
        &self.disks[usize::from(id) - 1]
    }

    /// Broker `id`'s tick rate.
    pub fn clock(&self, id: u8) -> &ClockRate {
        &self.clocks[usize::from(id) - 1]
    }

    /// Kills the broker's node; its disk loses unsynced writes (maybe tearing the last one).
    pub fn kill(&self, id: u8) {
        self.handle.kill(self.nodes[usize::from(id) - 1].id());
        self.disk(id).crash();
    }

    /// Starts the broker again on what its disk kept.
    pub fn restart(&self, id: u8) {
        self.exits.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        let node = self.nodes[usize::from(id) - 1].id();
        // madsim's restart keeps the old run's sockets bound (only a kill
        // releases them): a broker that exited on its own could not listen again.
        self.handle.kill(node);
        self.handle.restart(node);
    }

    pub fn pause(&self, id: u8) {
        self.handle.pause(self.nodes[usize::from(id) - 1].id());
    }

    pub fn resume(&self, id: u8) {
        self.handle.resume(self.nodes[usize::from(id) - 1].id());
    }

    /// Brokers that exited on their own since their last start, and how.
    pub fn exited(&self) -> BTreeMap<u8, String> {
        self.exits.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The Kafka bootstrap addresses of the founders (a joiner may not run yet).
    pub fn bootstrap(&self) -> Vec<String> {
        (1..=self.founders).map(|id| address(id, KAFKA_PORT).to_string()).collect()
    }
}
