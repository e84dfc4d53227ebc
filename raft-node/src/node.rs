//! The node: every raft group this broker hosts, driven from one task.
//!
//! One tick source drives all groups; peer messages and API requests come in
//! through channels; each round ends with every group's Ready handled (entries
//! durable before the messages that depend on them leave) and the outbound
//! messages handed to the transport. The node also keeps the partition
//! replicas in step with the committed metadata, and publishes a view of the
//! cluster (metadata plus who leads what) for the Kafka API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use log_core::batch::RecordBatch;
use log_core::metadata::{ClusterMetadata, Command, PartitionAssignment, TopicConfig, SEGMENT_BYTES};
use log_core::partition::RetentionPolicy;
use log_core::ErrorCode;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use slog::{o, Logger};
use tokio::sync::{mpsc, oneshot};

use crate::group_id::GroupId;
use crate::peer_message::PeerMessage;
use crate::planted::{planted, Bug};
use crate::replica::membership::Step;
use crate::replica::metadata::MetadataMachine;
use crate::replica::partition::{Acks, FetchedData, OffsetSpec, PartitionMachine, ProduceResult};
use crate::replica::throttle::{Throttle, LEARNER_INFLIGHT};
use crate::replica::{AppliedHook, Outbox, QuorumState, RaftSettings, Replica, ReplicaEnv, ReplicaError};
use crate::replica_id::{broker_of, replica_id};
use crate::storage::{Disk, LogConfig};
use crate::transport::{Inbound, Transport};
use crate::watch;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: u64,
    /// The brokers that formed the cluster (`[[cluster]]`) and their raft
    /// addresses: the metadata group's first voters. A broker not among them
    /// is a joiner: it starts with no metadata and asks them to let it in.
    pub founders: BTreeMap<u64, SocketAddr>,
    /// Where other brokers reach this one's raft transport (registered).
    pub raft_address: SocketAddr,
    /// The Kafka address this broker registers for clients.
    pub advertised_host: String,
    pub advertised_port: u16,
    pub raft: RaftSettings,
    pub log: LogConfig,
    pub tick: Duration,
    /// Ticks between retention passes over every partition replica (>= 1).
    pub retention_check_ticks: u64,
    /// Partitions of `__consumer_offsets` when this broker creates it.
    pub offsets_partitions: i32,
    /// Hands leadership back to preferred replicas, when set.
    pub leader_balance: Option<LeaderBalance>,
    /// Bytes per second this broker sends to learners (replicas being
    /// added by a move), 0 for no limit, unless the metadata sets another.
    pub move_throttle: u64,
    /// Ticks between two looks of the metadata leader for an uneven spread
    /// of replicas to even out; `None` leaves moves to the operator.
    pub auto_rebalance_ticks: Option<u64>,
    /// Seeds election jitter; fixed per node so a simulation replays.
    pub seed: u64,
    /// Given to every replica (see `AppliedHook`).
    pub on_applied: Option<AppliedHook>,
    /// Scales `tick` while the node runs (the simulator's clock skew).
    pub clock: Option<Arc<ClockRate>>,
}

/// How leadership goes back to preferred replicas.
#[derive(Clone, Copy, Debug)]
pub struct LeaderBalance {
    /// Ticks between two looks (>= 1).
    pub check_ticks: u64,
    /// Hand-overs this broker runs at once: leadership returns to a broker
    /// that comes back a few groups at a time, not in a burst of elections.
    pub max_transfers: usize,
}

impl NodeConfig {
    /// The time between two ticks now.
    fn tick_period(&self) -> Duration {
        self.clock.as_ref().map_or(self.tick, |clock| clock.period(self.tick))
    }
}

/// How fast a node's tick runs, in percent of its configured rate: the
/// simulator skews it per broker, as a slow or fast clock would.
#[derive(Debug)]
pub struct ClockRate(AtomicU32);

impl Default for ClockRate {
    fn default() -> Self {
        ClockRate(AtomicU32::new(100))
    }
}

impl ClockRate {
    /// `percent` of the configured rate (at least 1).
    pub fn set_percent(&self, percent: u32) {
        self.0.store(percent.max(1), Ordering::Relaxed);
    }

    pub fn percent(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }

    /// The period of one tick at this rate.
    fn period(&self, tick: Duration) -> Duration {
        tick * 100 / self.percent()
    }
}

/// A partition the metadata is moving: its target brokers and their raft ids.
struct Moving {
    group: GroupId,
    topic: String,
    partition: i32,
    target: Vec<i32>,
    voters: Vec<u64>,
}

/// Who leads a group, and in which term (a higher term wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub leader: u64,
    pub term: u64,
}

/// What the Kafka API needs to answer Metadata and route requests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterView {
    pub metadata: Arc<ClusterMetadata>,
    /// The metadata group's leader: Kafka's "controller".
    pub controller: Option<u64>,
    pub leaders: BTreeMap<GroupId, Leadership>,
}

/// A fetch's data, and the high watermark to wait on for more (long poll).
pub struct FetchReply {
    pub data: FetchedData,
    pub high_watermark: watch::Receiver<i64>,
}

pub enum Request {
    Produce {
        group: GroupId,
        batch: RecordBatch,
        acks: Acks,
        reply: oneshot::Sender<ProduceResult>,
    },
    Fetch {
        group: GroupId,
        offset: i64,
        max_bytes: u64,
        reply: oneshot::Sender<Result<FetchReply, ErrorCode>>,
    },
    ListOffsets {
        group: GroupId,
        spec: OffsetSpec,
        reply: oneshot::Sender<Result<i64, ErrorCode>>,
    },
    /// The group's members and how far each log reaches, answered by its leader.
    DescribeGroup {
        group: GroupId,
        reply: oneshot::Sender<Result<QuorumState, ErrorCode>>,
    },
    /// A metadata command, proposed through the metadata group's leader.
    Propose {
        command: Command,
    },
}

/// The API's side of the node.
#[derive(Clone)]
pub struct NodeHandle {
    pub node_id: u64,
    /// How many brokers formed the cluster (the metadata group's first voters).
    pub founders: usize,
    /// Partitions of `__consumer_offsets` when this broker creates it.
    pub offsets_partitions: i32,
    /// `[moves] throttle_bytes_per_sec`, what DescribeConfigs shows unless
    /// the metadata sets another.
    pub move_throttle: u64,
    requests: mpsc::Sender<Request>,
    view: watch::Receiver<Arc<ClusterView>>,
}

impl NodeHandle {
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.borrow().clone()
    }

    pub fn watch_view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.view.clone()
    }

    /// Sends a request; `false` if the node has stopped.
    pub async fn send(&self, request: Request) -> bool {
        self.requests.send(request).await.is_ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("metadata group failed: {0}")]
    Metadata(ReplicaError),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
}

pub struct Node {
    config: NodeConfig,
    env: ReplicaEnv,
    transport: Transport,
    metadata: Replica<MetadataMachine>,
    partitions: BTreeMap<GroupId, Replica<PartitionMachine>>,
    /// Replicas that failed or could not open, and the tick from which
    /// reconciling may open them again from disk (recovery checks the log).
    failed: BTreeMap<GroupId, u64>,
    /// Leadership of groups hosted elsewhere, from peers' hints.
    hints: BTreeMap<GroupId, Leadership>,
    /// Moves this broker's groups have finished, and the tick their
    /// completion was last proposed to the metadata group.
    completing: BTreeMap<GroupId, u64>,
    /// The transport's peers and the addresses it dials (see `sync_peers`).
    peers: BTreeMap<u64, SocketAddr>,
    /// Brokers that asked this one to let them in, until they are registered.
    joiners: BTreeMap<u64, SocketAddr>,
    /// Holds catch-up traffic to learners to the move throttle.
    throttle: Throttle,
    view: watch::Sender<Arc<ClusterView>>,
    requests: mpsc::Receiver<Request>,
    rng: ChaCha8Rng,
    ticks: u64,
    logger: Logger,
}

/// Wall-clock time in ms since the epoch, which retention by time compares
/// batch timestamps with: the node's only clock read (madsim intercepts it in
/// simulation). A clock before the epoch reads as 0, which expires nothing.
fn wall_clock_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// How many ticks between re-announcements of the groups this broker leads,
/// and between registration attempts.
const ANNOUNCE_TICKS: u64 = 20;

/// How many ticks a failed replica waits before it is opened again: a
/// transient fault (a read that failed its checksum) gets another chance,
/// a persistent one costs a recovery attempt this often.
const REOPEN_TICKS: u64 = 100;

impl Node {
    /// Opens the metadata group and every partition replica the committed
    /// metadata assigns here.
    pub fn open(
        config: NodeConfig,
        disk: Arc<dyn Disk>,
        transport: Transport,
        logger: &Logger,
    ) -> Result<(Node, NodeHandle), NodeError> {
        let logger = logger.new(o!("node" => config.node_id));
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let env = ReplicaEnv {
            node_id: config.node_id,
            disk,
            log_config: config.log.clone(),
            settings: config.raft.clone(),
            logger: logger.clone(),
        };
        // A joiner's metadata replica starts empty, as a partition learner's:
        // it learns the configuration from the leader's snapshot once added.
        let founders: Vec<u64> = config.founders.keys().copied().collect();
        let voters = if config.founders.contains_key(&config.node_id) { founders } else { Vec::new() };
        let mut metadata =
            Replica::open(GroupId::Metadata, &voters, rng.next_u64(), &env).map_err(NodeError::Metadata)?;
        metadata.set_on_applied(config.on_applied.clone());
        metadata.set_durable_apply();
        let (requests_tx, requests) = mpsc::channel(1024);
        let view = watch::Sender::new(Arc::new(ClusterView::default()));
        let handle = NodeHandle {
            node_id: config.node_id,
            founders: config.founders.len(),
            offsets_partitions: config.offsets_partitions,
            move_throttle: config.move_throttle,
            requests: requests_tx,
            view: view.subscribe(),
        };
        let peers = config.founders.iter().filter(|(&id, _)| id != config.node_id).map(|(&id, &a)| (id, a)).collect();
        let mut node = Node {
            throttle: Throttle::default(),
            config,
            env,
            transport,
            metadata,
            partitions: BTreeMap::new(),
            failed: BTreeMap::new(),
            hints: BTreeMap::new(),
            completing: BTreeMap::new(),
            peers,
            joiners: BTreeMap::new(),
            view,
            requests,
            rng,
            ticks: 0,
            logger,
        };
        node.reconcile()?;
        node.sync_peers();
        node.publish_view();
        Ok((node, handle))
    }

    /// Runs until the transport or the request channel closes, or the
    /// metadata group fails (the broker cannot go on without it).
    pub async fn run(mut self, mut inbound: Inbound) -> Result<(), NodeError> {
        let mut next_tick = tokio::time::Instant::now() + self.config.tick_period();
        loop {
            // Biased: tokio's random branch order is not seeded by madsim, and a
            // simulation must replay.
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(next_tick) => {
                    self.tick()?;
                    next_tick = tokio::time::Instant::now() + self.config.tick_period();
                }
                peer = inbound.recv() => match peer {
                    Some((from, payload)) => self.on_peer(from, &payload),
                    None => return Ok(()),
                },
                request = self.requests.recv() => match request {
                    Some(request) => self.on_request(request),
                    None => return Ok(()),
                },
            }
            // Take whatever else is already waiting, so one round of Ready
            // handling (and one sync per group) covers it all.
            while let Some((from, payload)) = inbound.try_recv() {
                self.on_peer(from, &payload);
            }
            while let Ok(request) = self.requests.try_recv() {
                self.on_request(request);
            }
            self.process_ready()?;
        }
    }

    fn tick(&mut self) -> Result<(), NodeError> {
        self.ticks += 1;
        self.metadata.tick();
        self.partitions.values_mut().for_each(|r| r.tick());
        if self.ticks % ANNOUNCE_TICKS == 0 {
            self.sync_peers();
            self.register();
            self.announce(|_| true);
            self.report_deleted()?;
        }
        if self.ticks % self.config.retention_check_ticks.max(1) == 0 {
            self.enforce_retention(wall_clock_ms());
        }
        self.pace_moves();
        self.drive_moves();
        self.drive_metadata_membership()?;
        self.auto_rebalance();
        if let Some(balance) = self.config.leader_balance {
            if self.ticks % balance.check_ticks.max(1) == 0 {
                self.balance_leaders(balance.max_transfers);
            }
        }
        if self.failed.values().any(|&due| due <= self.ticks) {
            let ticks = self.ticks;
            self.failed.retain(|_, due| *due > ticks);
            self.reconcile()?;
        }
        Ok(())
    }

    /// Stops serving a replica after a storage or raft failure; it is opened
    /// again from disk after `REOPEN_TICKS`.
    fn fail(&mut self, group: GroupId) {
        self.partitions.remove(&group);
        self.failed.insert(group, self.ticks + REOPEN_TICKS);
    }

    /// One retention pass: every partition replica, leader or follower,
    /// trims its own log by its topic's policy. A replica whose storage
    /// fails here stops serving, as on any storage failure.
    fn enforce_retention(&mut self, now_ms: i64) {
        let state = self.metadata.machine.state();
        let mut failed = Vec::new();
        for (group, replica) in self.partitions.iter_mut() {
            let GroupId::Partition { topic, .. } = group else { continue };
            // A topic deleted but not yet reconciled away: leave its log alone.
            let Some((_, topic)) = state.topic_by_id(topic) else { continue };
            let config = topic.config();
            let policy =
                RetentionPolicy { retention_ms: config.retention_ms(), retention_bytes: config.retention_bytes() };
            match replica.enforce_retention(now_ms, policy) {
                Ok(Some(cut)) => slog::debug!(self.logger, "retention"; "group" => %group, "through" => cut,
                    "log_start_offset" => replica.machine.log().log_start_offset()),
                Ok(None) => {}
                Err(e) => {
                    slog::crit!(self.logger, "retention failed; the replica stops serving until reopened"; "group" => %group, "error" => %e);
                    failed.push(*group);
                }
            }
        }
        for group in failed {
            self.fail(group);
        }
    }

    /// A tick's worth of allowance for the move throttle, at the rate the
    /// metadata sets for this broker, else its configured one; the throttle
    /// lets go of what it holds for groups no longer led here. While it
    /// limits, learners of the groups led here keep a small inflight
    /// window, so what it holds stays small.
    fn pace_moves(&mut self) {
        let set = self.metadata.machine.state().move_throttles().of(self.config.node_id as i32);
        let bytes_per_sec = set.unwrap_or(self.config.move_throttle);
        let tick_ms = self.config.tick.as_millis().max(1) as u64;
        let per_tick = (bytes_per_sec > 0).then(|| bytes_per_sec.saturating_mul(tick_ms) / 1000);
        if per_tick != self.throttle.limit() {
            slog::info!(self.logger, "move throttle"; "bytes_per_sec" => bytes_per_sec,
                "from" => if set.is_some() { "the cluster's dynamic config" } else { "[moves] throttle_bytes_per_sec" });
            self.throttle.set_limit(per_tick);
        }
        self.throttle.tick();
        let partitions = &self.partitions;
        self.throttle.retain(|group| partitions.get(group).is_some_and(|r| r.is_leader()));
        let cap = per_tick.map(|_| LEARNER_INFLIGHT);
        for replica in self.partitions.values_mut() {
            replica.pace_learners(cap);
        }
    }

    /// Each group this broker leads that the metadata is moving takes its
    /// next membership step (see `replica::membership`); once its voters are
    /// the target, the move's completion is proposed to the metadata group,
    /// again every `ANNOUNCE_TICKS` until the metadata shows it.
    fn drive_moves(&mut self) {
        let state = self.metadata.machine.state();
        let moves: Vec<Moving> = state
            .reassignments()
            .filter_map(|(name, partition, assignment)| {
                let group = GroupId::Partition { topic: state.topic(name)?.id(), partition };
                let target = assignment.reassignment()?.target.clone();
                let voters = target.iter().map(|&b| replica_id(b as u64, assignment.generation(b))).collect();
                Some(Moving { group, topic: name.to_owned(), partition, target, voters })
            })
            .collect();
        self.completing.retain(|group, _| moves.iter().any(|m| m.group == *group));
        let mut failed = Vec::new();
        for Moving { group, topic, partition, target, voters } in moves {
            let Some(replica) = self.partitions.get_mut(&group) else { continue };
            match replica.drive_membership(&voters, &[]) {
                Ok(Some(Step::Done)) => {
                    let due = self.completing.get(&group).is_none_or(|&at| at + ANNOUNCE_TICKS <= self.ticks);
                    if due {
                        self.completing.insert(group, self.ticks);
                        let command = Command::CompleteReassignment { topic, partition, target };
                        if let Err(e) = self.metadata.propose(command.encode()) {
                            slog::debug!(self.logger, "move completion not proposed"; "group" => %group, "error" => %e);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    slog::crit!(self.logger, "membership change failed; the replica stops serving until reopened"; "group" => %group, "error" => %e);
                    failed.push(group);
                }
            }
        }
        for group in failed {
            self.fail(group);
        }
    }

    /// The metadata group's leader moves its membership towards
    /// `ClusterMetadata::metadata_members`: every broker in the cluster a
    /// member, 3 or 5 of them voters, one configuration change at a time.
    fn drive_metadata_membership(&mut self) -> Result<(), NodeError> {
        if !self.metadata.is_leader() {
            return Ok(());
        }
        let founders: Vec<i32> = self.config.founders.keys().map(|&id| id as i32).collect();
        let members = self.metadata.machine.state().metadata_members(&founders);
        let ids = |set: &std::collections::BTreeSet<i32>| set.iter().map(|&id| id as u64).collect::<Vec<u64>>();
        self.metadata.drive_membership(&ids(&members.voters), &ids(&members.learners)).map_err(NodeError::Metadata)?;
        Ok(())
    }

    /// With `auto_rebalance_ticks`, the metadata group's leader proposes the
    /// moves that spread replicas evenly (`ClusterMetadata::auto_rebalance`:
    /// none while a plan is being carried out) every that many ticks. A
    /// proposal lost with a leader change is planned again at a later look;
    /// one that raced an earlier plan is refused by the metadata machine.
    fn auto_rebalance(&mut self) {
        let Some(every) = self.config.auto_rebalance_ticks else { return };
        if self.ticks % every.max(1) != 0 || !self.metadata.is_leader() {
            return;
        }
        let state = self.metadata.machine.state();
        let commands = state.auto_rebalance();
        if commands.is_empty() {
            return;
        }
        slog::info!(self.logger, "automatic rebalance: replicas are not spread evenly over the brokers (registered, not draining)";
            "brokers" => state.brokers().count(), "moves" => commands.len());
        for command in &commands {
            if let Command::ReassignPartition { topic, partition, replicas: Some(to) } = command {
                let from = state.replicas(topic, *partition).unwrap_or_default();
                slog::info!(self.logger, "automatic rebalance: moving"; "topic" => topic, "partition" => partition,
                    "from" => ?from, "to" => ?to);
            }
        }
        for command in commands {
            if let Err(e) = self.metadata.propose(command.encode()) {
                slog::info!(self.logger, "automatic rebalance: move not proposed"; "error" => %e);
            }
        }
    }

    /// Links the transport to every broker this one may need to talk to: the
    /// registered brokers (at their registered raft address), the founders
    /// not registered yet (at their configured one) and the brokers asking to
    /// join. A broker unregistered is dropped once the metadata group no
    /// longer has it. Runs on every metadata change and every
    /// `ANNOUNCE_TICKS` (configuration changes are not metadata changes).
    fn sync_peers(&mut self) {
        let me = self.config.node_id;
        let state = self.metadata.machine.state();
        self.joiners.retain(|&id, _| state.broker(id as i32).is_none() && !state.is_removed(id as i32));
        let mut wanted: BTreeMap<u64, SocketAddr> = self.joiners.clone();
        for (&id, &addr) in &self.config.founders {
            if state.broker(id as i32).is_none() && !state.is_removed(id as i32) {
                wanted.insert(id, addr);
            }
        }
        for (id, broker) in state.brokers() {
            match broker.raft.as_deref().map(str::parse::<SocketAddr>) {
                Some(Ok(addr)) => {
                    wanted.insert(id as u64, addr);
                }
                // Registered before brokers registered their raft address: a
                // founder, at its configured address, until it registers again.
                None => {
                    if let Some(&addr) = self.config.founders.get(&(id as u64)) {
                        wanted.insert(id as u64, addr);
                    }
                }
                Some(Err(e)) => slog::warn!(self.logger, "unusable raft address"; "broker" => id, "error" => %e),
            }
        }
        // A broker unregistered stays linked while the metadata group still
        // has it (its leader may be handing over to another voter).
        let conf = self.metadata.conf_state();
        for id in conf.voters.iter().chain(&conf.voters_outgoing).chain(&conf.learners) {
            if let (false, Some(&addr)) = (wanted.contains_key(id), self.peers.get(id)) {
                wanted.insert(*id, addr);
            }
        }
        wanted.remove(&me);
        let gone: Vec<u64> = self.peers.keys().filter(|id| !wanted.contains_key(id)).copied().collect();
        for id in gone {
            slog::info!(self.logger, "broker left the cluster; peer dropped"; "peer" => id);
            self.transport.remove_peer(id);
            self.peers.remove(&id);
        }
        for (id, addr) in wanted {
            if self.peers.get(&id) != Some(&addr) {
                slog::info!(self.logger, "peer linked"; "peer" => id, "raft" => %addr);
                if self.transport.add_peer(id, addr).is_ok() {
                    self.peers.insert(id, addr);
                }
            }
        }
    }

    /// A broker asks to be let in: link to it, and propose its registration.
    fn on_join(&mut self, from: u64, id: u64, raft: String, host: String, port: u16) {
        let state = self.metadata.machine.state();
        let addr = match raft.parse::<SocketAddr>() {
            // A founder never joins: a joiner misconfigured with a founder's
            // id must not take over its registration.
            Ok(addr)
                if from == id
                    && i32::try_from(id).is_ok()
                    && !state.is_removed(id as i32)
                    && !self.config.founders.contains_key(&id) =>
            {
                addr
            }
            _ => {
                slog::warn!(self.logger, "join request refused"; "from" => from, "id" => id, "raft" => raft);
                return;
            }
        };
        let registered = state
            .broker(id as i32)
            .is_some_and(|b| b.host == host && b.port == port && b.raft.as_deref() == Some(raft.as_str()));
        if state.broker(id as i32).is_none() {
            self.joiners.insert(id, addr);
            self.sync_peers();
        }
        if !registered && self.metadata.leader().is_some() {
            let command = Command::RegisterBroker { id: id as i32, host, port, rack: None, raft: Some(raft) };
            if let Err(e) = self.metadata.propose(command.encode()) {
                slog::debug!(self.logger, "join registration not proposed"; "broker" => id, "error" => %e);
            }
        }
    }

    /// Tells the metadata group which replicas moved off this broker it has
    /// deleted (`reconcile` deletes them; files a crash mid-deletion left go
    /// here), so that later moves may bring the partition back here: until
    /// then its group could take the old replica's log for the new one's.
    fn report_deleted(&mut self) -> Result<(), NodeError> {
        let me = self.config.node_id;
        let mut deleted = Vec::new();
        for (name, topic) in self.metadata.machine.state().topics() {
            for (index, assignment) in topic.partitions().iter().enumerate() {
                let group = GroupId::Partition { topic: topic.id(), partition: index as i32 };
                let gone = !self.partitions.contains_key(&group) && !self.failed.contains_key(&group);
                if gone && assignment.leaving().iter().any(|&b| b as u64 == me) {
                    deleted.push((name.to_owned(), index as i32, group.file_prefix()));
                }
            }
        }
        if deleted.is_empty() {
            return Ok(());
        }
        for name in self.env.disk.list()? {
            if deleted.iter().any(|(_, _, prefix)| name.starts_with(prefix)) {
                self.env.disk.remove(&name)?;
            }
        }
        for (topic, partition, _) in deleted {
            let command = Command::ReplicaDeleted { topic, partition, broker: me as i32 };
            if let Err(e) = self.metadata.propose(command.encode()) {
                slog::debug!(self.logger, "replica deletion not reported"; "error" => %e);
            }
        }
        Ok(())
    }

    /// Hands the groups this broker leads to their preferred replica (the
    /// first of the partition's replicas) when it is another voter, active
    /// and caught up, with at most `max` hand-overs under way. A partition
    /// being moved is left alone: its move decides who leads.
    fn balance_leaders(&mut self, max: usize) {
        let state = self.metadata.machine.state();
        let mut under_way = self.partitions.values().filter(|r| r.handing_over()).count();
        let mut failed = Vec::new();
        for (group, replica) in self.partitions.iter_mut() {
            if under_way >= max {
                break;
            }
            let GroupId::Partition { topic, partition } = group else { continue };
            let Some(assignment) = state.topic_by_id(topic).and_then(|(_, t)| t.partition(*partition)) else {
                continue;
            };
            if assignment.reassignment().is_some() || !replica.is_leader() {
                continue;
            }
            let Some(&preferred) = assignment.replicas().first() else { continue };
            match replica.hand_over_to(replica_id(preferred as u64, assignment.generation(preferred))) {
                Ok(true) => {
                    under_way += 1;
                    slog::info!(self.logger, "handing leadership to the preferred replica"; "group" => %group, "to" => preferred);
                }
                Ok(false) => {}
                Err(e) => {
                    slog::crit!(self.logger, "leadership hand-over failed; the replica stops serving until reopened"; "group" => %group, "error" => %e);
                    failed.push(*group);
                }
            }
        }
        for group in failed {
            self.fail(group);
        }
    }

    fn on_peer(&mut self, from: u64, payload: &[u8]) {
        match PeerMessage::decode(payload) {
            Ok(PeerMessage::Raft { group: GroupId::Metadata, message }) => self.metadata.step(message),
            Ok(PeerMessage::Raft { group, message }) => match self.partitions.get_mut(&group) {
                Some(replica) if message.to == replica.id() => replica.step(message),
                // For another generation of this broker's replica: stale.
                Some(_) => slog::debug!(self.logger, "message for another replica generation"; "group" => %group,
                    "from" => from, "to" => message.to),
                // Not created here yet (metadata still on its way) or deleted:
                // raft retries, so dropping is safe.
                None => slog::debug!(self.logger, "message for unknown group"; "group" => %group, "from" => from),
            },
            Ok(PeerMessage::LeaderHint { group, term, leader }) => {
                let known = self.hints.get(&group).map_or(0, |l| l.term);
                if term >= known {
                    self.hints.insert(group, Leadership { leader, term });
                    self.publish_view();
                }
            }
            Ok(PeerMessage::Join { id, raft, host, port }) => self.on_join(from, id, raft, host, port),
            Err(e) => slog::warn!(self.logger, "undecodable peer message"; "from" => from, "error" => %e),
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Produce { group, batch, acks, reply } => match self.partitions.get_mut(&group) {
                Some(replica) => replica.produce(batch, acks, reply),
                None => drop(reply.send(Err(self.missing(&group)))),
            },
            Request::Fetch { group, offset, max_bytes, reply } => {
                let result = match self.partitions.get(&group) {
                    Some(replica) => replica
                        .fetch(offset, max_bytes)
                        .map(|data| FetchReply { data, high_watermark: replica.machine.subscribe_high_watermark() }),
                    None => Err(self.missing(&group)),
                };
                let _ = reply.send(result);
            }
            Request::ListOffsets { group, spec, reply } => {
                let result = match self.partitions.get(&group) {
                    Some(replica) => replica.list_offset(spec),
                    None => Err(self.missing(&group)),
                };
                let _ = reply.send(result);
            }
            Request::DescribeGroup { group, reply } => {
                let quorum = match group {
                    GroupId::Metadata => Ok(self.metadata.quorum()),
                    _ => self.partitions.get(&group).map(Replica::quorum).ok_or_else(|| self.missing(&group)),
                };
                let _ = reply.send(quorum.and_then(|q| q.ok_or(ErrorCode::NotLeaderOrFollower)));
            }
            Request::Propose { command } => {
                // Forwarded to the leader by raft; dropped if none is known,
                // and the caller, waiting for the effect, times out.
                if let Err(e) = self.metadata.propose(command.encode()) {
                    slog::debug!(self.logger, "metadata proposal dropped"; "error" => %e);
                }
            }
        }
    }

    /// The error for a request about a partition not hosted here.
    fn missing(&self, group: &GroupId) -> ErrorCode {
        let known = match group {
            GroupId::Partition { topic, .. } => self.metadata.machine.state().topic_by_id(topic).is_some(),
            GroupId::Metadata => false,
        };
        if known {
            ErrorCode::NotLeaderOrFollower
        } else {
            ErrorCode::UnknownTopicOrPartition
        }
    }

    fn process_ready(&mut self) -> Result<(), NodeError> {
        let mut outbox = Outbox::default();
        let metadata_epoch = self.metadata.machine.state().epoch();
        self.metadata.handle_ready(&mut outbox).map_err(NodeError::Metadata)?;
        let mut failed = Vec::new();
        for (group, replica) in self.partitions.iter_mut() {
            if let Err(e) = replica.handle_ready(&mut outbox) {
                slog::crit!(self.logger, "partition replica failed; it stops serving until reopened"; "group" => %group, "error" => %e);
                failed.push(*group);
            }
        }
        for group in failed {
            self.fail(group);
        }
        let mut outgoing = self.throttle.release();
        for (group, message) in outbox.messages {
            let admitted = match group {
                GroupId::Metadata => Some(message),
                _ => {
                    let to_learner = self.partitions.get(&group).is_some_and(|r| r.is_learner(message.to));
                    self.throttle.admit(group, message, to_learner)
                }
            };
            outgoing.extend(admitted.map(|message| (group, message)));
        }
        for (group, message) in outgoing {
            let to = broker_of(message.to);
            self.send(to, PeerMessage::Raft { group, message }.encode());
        }
        if self.metadata.machine.state().epoch() != metadata_epoch {
            self.reconcile()?;
            self.sync_peers();
        }
        self.publish_view();
        Ok(())
    }

    /// Opens the replicas the metadata assigns here; removes the data of
    /// deleted topics, and of replicas moved off this broker (the metadata
    /// drops a broker from a partition's replicas only once the group has
    /// committed a configuration without it).
    fn reconcile(&mut self) -> Result<(), NodeError> {
        for topic in self.metadata.machine.take_deleted() {
            let other_topic = |group: &GroupId| !matches!(group, GroupId::Partition { topic: t, .. } if *t == topic);
            self.partitions.retain(|group, _| other_topic(group));
            self.failed.retain(|group, _| other_topic(group));
            let prefix = format!("p-{}-", crate::group_id::hex(&topic));
            for name in self.env.disk.list()?.into_iter().filter(|n| n.starts_with(&prefix)) {
                self.env.disk.remove(&name)?;
            }
        }
        let me = self.config.node_id;
        let state = self.metadata.machine.state();
        let moved_off: Vec<GroupId> = self
            .partitions
            .keys()
            .chain(self.failed.keys())
            .filter(|group| match group {
                GroupId::Partition { topic, partition } => state
                    .topic_by_id(topic)
                    .and_then(|(_, t)| t.partition(*partition))
                    .is_some_and(|a| !a.replicas().iter().any(|&b| b as u64 == me) || removed_early(a, me)),
                GroupId::Metadata => false,
            })
            .copied()
            .collect();
        let any_moved_off = !moved_off.is_empty();
        for group in moved_off {
            slog::info!(self.logger, "replica moved off this broker; deleting its data"; "group" => %group);
            self.partitions.remove(&group);
            self.failed.remove(&group);
            let prefix = group.file_prefix();
            for name in self.env.disk.list()?.into_iter().filter(|n| n.starts_with(&prefix)) {
                self.env.disk.remove(&name)?;
            }
        }
        if any_moved_off {
            self.report_deleted()?;
        }
        let mut wanted = Vec::new();
        for (_, topic) in self.metadata.machine.state().topics() {
            for (index, assignment) in topic.partitions().iter().enumerate() {
                let group = GroupId::Partition { topic: topic.id(), partition: index as i32 };
                let open = self.partitions.contains_key(&group) || self.failed.contains_key(&group);
                if assignment.replicas().iter().any(|&b| b as u64 == me) && !open {
                    // No voters for a replica a move added: it joins as a
                    // learner and learns its configuration.
                    let voters: Vec<u64> = assignment
                        .bootstrap_voters(me as i32)
                        .unwrap_or_default()
                        .iter()
                        .map(|&b| replica_id(b as u64, 0))
                        .collect();
                    let id = replica_id(me, assignment.generation(me as i32));
                    wanted.push((group, id, voters, self.segment_bytes(topic.config())));
                }
            }
        }
        for (group, id, voters, segment_bytes) in wanted {
            let seed = self.rng.next_u64();
            let env = ReplicaEnv {
                node_id: id,
                log_config: LogConfig { segment_bytes, ..self.env.log_config.clone() },
                ..self.env.clone()
            };
            match Replica::open(group, &voters, seed, &env) {
                Ok(mut replica) => {
                    if let Some(hook) = &self.config.on_applied {
                        // A replica opened (again, or anew after a move back
                        // here) applies from its own start.
                        hook.call(&group, &[]);
                    }
                    replica.set_on_applied(self.config.on_applied.clone());
                    self.partitions.insert(group, replica);
                }
                Err(e) => {
                    slog::crit!(self.logger, "cannot open partition replica"; "group" => %group, "error" => %e);
                    self.failed.insert(group, self.ticks + REOPEN_TICKS);
                }
            }
        }
        Ok(())
    }

    /// The segment roll size of a topic's replicas: its `segment.bytes` if
    /// set, else the broker's (Kafka's `log.segment.bytes` default). Topic
    /// configs cannot change after creation, so it is fixed at open.
    fn segment_bytes(&self, config: &TopicConfig) -> u64 {
        match config.entries().contains_key(SEGMENT_BYTES) {
            true => config.segment_bytes().max(1) as u64,
            false => self.env.log_config.segment_bytes,
        }
    }

    /// Proposes this broker's registration until the metadata shows it; a
    /// joiner also asks the founders to let it in (it cannot propose before
    /// the metadata group has added it). A broker removed from the cluster
    /// stays out.
    fn register(&mut self) {
        let me = self.config.node_id as i32;
        let raft = self.config.raft_address.to_string();
        let (host, port) = (&self.config.advertised_host, self.config.advertised_port);
        let state = self.metadata.machine.state();
        let registered =
            state.broker(me).is_some_and(|b| b.host == *host && b.port == port && b.raft.as_deref() == Some(&raft));
        if registered || state.is_removed(me) {
            return;
        }
        if !self.config.founders.contains_key(&self.config.node_id) {
            let join = PeerMessage::Join { id: me as u64, raft: raft.clone(), host: host.clone(), port }.encode();
            for &founder in self.config.founders.keys() {
                self.send(founder, join.clone());
            }
        }
        if self.metadata.leader().is_some() {
            let command = Command::RegisterBroker { id: me, host: host.clone(), port, rack: None, raft: Some(raft) };
            let _ = self.metadata.propose(command.encode());
        }
    }

    /// Hands a payload to the transport. Raft tolerates lost messages (it
    /// retries), so one the transport refuses (a slow peer's full queue, a
    /// peer not known yet) is only logged.
    fn send(&self, to: u64, payload: Bytes) {
        if let Err(e) = self.transport.send(to, payload) {
            slog::debug!(self.logger, "peer message not sent"; "to" => to, "error" => %e);
        }
    }

    /// Tells every other broker which groups this one leads.
    fn announce(&self, filter: impl Fn(&GroupId) -> bool) {
        let me = self.config.node_id;
        let peers: Vec<u64> =
            self.metadata.machine.state().brokers().map(|(id, _)| id as u64).filter(|&id| id != me).collect();
        for (group, replica) in self.partitions.iter().filter(|(g, r)| r.is_leader() && filter(g)) {
            let hint = PeerMessage::LeaderHint { group: *group, term: replica.term(), leader: me }.encode();
            for &peer in &peers {
                self.send(peer, hint.clone());
            }
        }
    }

    fn publish_view(&mut self) {
        let mut leaders = self.hints.clone();
        for (group, replica) in &self.partitions {
            if let Some(leader) = replica.leader() {
                let term = replica.term();
                if leaders.get(group).is_none_or(|l| l.term <= term) {
                    leaders.insert(*group, Leadership { leader, term });
                }
            }
        }
        let view =
            ClusterView { metadata: self.metadata.machine.published(), controller: self.metadata.leader(), leaders };
        let current = self.view.borrow().clone();
        if *current != view {
            // Groups whose leadership moved to this broker are announced at once.
            let me = self.config.node_id;
            let gained: Vec<GroupId> = view
                .leaders
                .iter()
                .filter(|(g, l)| l.leader == me && current.leaders.get(*g).is_none_or(|c| c != *l))
                .map(|(g, _)| *g)
                .collect();
            self.view.send_replace(Arc::new(view));
            if !gained.is_empty() {
                self.announce(|g| gained.contains(g));
            }
        }
    }
}

/// The planted remove-before-commit bug: a replica a move takes off this
/// broker is deleted as soon as the move starts (and opened again, empty,
/// as the same member), not once the new configuration has committed.
fn removed_early(assignment: &PartitionAssignment, me: u64) -> bool {
    planted(Bug::RemoveBeforeCommit)
        && assignment.reassignment().is_some_and(|r| r.removing.iter().any(|&b| b as u64 == me))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_scales_the_tick_period() {
        let tick = Duration::from_millis(50);
        let clock = ClockRate::default();
        assert_eq!(clock.period(tick), tick);
        clock.set_percent(50);
        assert_eq!(clock.period(tick), Duration::from_millis(100), "half as fast: ticks twice as far apart");
        clock.set_percent(200);
        assert_eq!(clock.period(tick), Duration::from_millis(25));
        clock.set_percent(0);
        assert_eq!(clock.percent(), 1, "a stopped clock is pause's job; the slowest rate is 1%");
    }
}
