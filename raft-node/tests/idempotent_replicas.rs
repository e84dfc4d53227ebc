//! The idempotent producer on partition replicas in process: three replicas
//! of one partition, each on its own `FaultyDisk`, raft messages routed by
//! hand (deterministic, no sleeps).
//!
//! - the leader answers a retried batch with its original offset and writes
//!   it once, whether the original is committed or still in flight; a gap in
//!   the sequence is OUT_OF_ORDER_SEQUENCE_NUMBER, an older epoch
//!   INVALID_PRODUCER_EPOCH, and neither is written;
//! - the producer state is rebuilt from the log on every replica: a new
//!   leader after failover, and every replica after a power loss of all
//!   three, still recognise the retries.

use std::collections::BTreeMap;
use std::sync::Arc;

use log_core::batch::testing::{encode, BatchSpec};
use log_core::batch::RecordBatch;
use log_core::ErrorCode;
use raft_node::group_id::GroupId;
use raft_node::replica::partition::{Acks, PartitionMachine, ProduceResult};
use raft_node::replica::{Outbox, RaftSettings, Replica, ReplicaEnv};
use raft_node::storage::{FaultyDisk, LogConfig};
use tokio::sync::oneshot;

const GROUP: GroupId = GroupId::Partition { topic: [9; 16], partition: 0 };
const IDS: [u64; 3] = [1, 2, 3];
const PRODUCER: i64 = 4_000;

/// A batch of `records` records from the producer at `epoch`, starting at `seq`.
fn batch(epoch: i16, seq: i32, records: i32) -> RecordBatch {
    let spec = BatchSpec {
        record_count: records,
        producer_id: PRODUCER,
        producer_epoch: epoch,
        base_sequence: seq,
        ..BatchSpec::default()
    };
    RecordBatch::read(encode(&spec)).expect("valid batch")
}

struct Cluster {
    disks: BTreeMap<u64, Arc<FaultyDisk>>,
    /// The running replicas; a crashed one is absent and gets no messages.
    replicas: BTreeMap<u64, Replica<PartitionMachine>>,
}

impl Cluster {
    fn new() -> Cluster {
        let disks: BTreeMap<u64, Arc<FaultyDisk>> = IDS.iter().map(|&id| (id, Arc::new(FaultyDisk::new(id)))).collect();
        let mut cluster = Cluster { disks, replicas: BTreeMap::new() };
        for id in IDS {
            cluster.start(id);
        }
        cluster.elect();
        cluster
    }

    fn start(&mut self, id: u64) {
        let env = ReplicaEnv {
            node_id: id,
            disk: self.disks[&id].clone(),
            log_config: LogConfig::default(),
            settings: RaftSettings::default(),
            logger: slog::Logger::root(slog::Discard, slog::o!()),
        };
        self.replicas.insert(id, Replica::open(GROUP, &IDS, 200 + id, &env).expect("open replica"));
    }

    /// A power loss: the replica stops and its unsynced writes are gone.
    fn crash(&mut self, id: u64) {
        self.replicas.remove(&id);
        self.disks[&id].crash();
    }

    fn leader(&self) -> u64 {
        let leaders: Vec<u64> = self.replicas.iter().filter(|(_, r)| r.is_leader()).map(|(&id, _)| id).collect();
        assert_eq!(leaders.len(), 1, "exactly one leader");
        leaders[0]
    }

    /// Handles every Ready and delivers every message until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1000 {
            let mut outbox = Outbox::default();
            for (id, replica) in self.replicas.iter_mut() {
                replica.handle_ready(&mut outbox).unwrap_or_else(|e| panic!("replica {id}: {e}"));
            }
            if outbox.messages.is_empty() && self.replicas.values().all(|r| !r.has_ready()) {
                return;
            }
            for (_, message) in outbox.messages {
                if let Some(to) = self.replicas.get_mut(&message.to) {
                    to.step(message);
                }
            }
        }
        panic!("the cluster never settled");
    }

    fn elect(&mut self) {
        for _ in 0..500 {
            self.replicas.values_mut().for_each(|r| r.tick());
            self.settle();
            let leaders = self.replicas.values().filter(|r| r.is_leader()).count();
            if leaders == 1 && self.replicas.values().all(|r| r.leader().is_some()) {
                return;
            }
        }
        panic!("no leader elected");
    }

    /// Hands `batch` to the leader; nothing moves until Readys are handled.
    fn start_produce(&mut self, batch: RecordBatch) -> oneshot::Receiver<ProduceResult> {
        let leader = self.leader();
        let (tx, rx) = oneshot::channel();
        self.replicas.get_mut(&leader).expect("leader").produce(batch, Acks::All, tx);
        rx
    }

    /// Produces `batch` with acks=all and returns the answer once settled.
    fn produce(&mut self, batch: RecordBatch) -> ProduceResult {
        let mut rx = self.start_produce(batch);
        self.settle();
        rx.try_recv().expect("answered once settled")
    }

    /// The next offset and high watermark of every running replica.
    fn ends(&self) -> BTreeMap<u64, (i64, i64)> {
        let ends = self
            .replicas
            .iter()
            .map(|(&id, r)| (id, (r.machine.log().next_offset(), r.machine.log().high_watermark())));
        ends.collect()
    }

    fn assert_ends(&self, offset: i64) {
        assert!(self.ends().values().all(|&end| end == (offset, offset)), "{:?} != {offset}", self.ends());
    }
}

#[test]
fn retries_get_their_offset_and_gaps_and_old_epochs_are_refused() {
    let mut c = Cluster::new();
    assert_eq!(c.produce(batch(0, 0, 2)), Ok(0));
    assert_eq!(c.produce(batch(0, 2, 3)), Ok(2));
    assert_eq!(c.produce(batch(0, 0, 2)), Ok(0), "a committed retry");
    assert_eq!(c.produce(batch(0, 2, 3)), Ok(2));
    c.assert_ends(5);

    // A retry of a batch still in flight is not written again; the client
    // hears nothing conclusive until the original commits, then its offset.
    let mut original = c.start_produce(batch(0, 5, 1));
    let mut early_retry = c.start_produce(batch(0, 5, 1));
    c.settle();
    assert_eq!(original.try_recv(), Ok(Ok(5)));
    assert_eq!(early_retry.try_recv(), Ok(Err(ErrorCode::RequestTimedOut)));
    assert_eq!(c.produce(batch(0, 5, 1)), Ok(5));
    c.assert_ends(6);

    assert_eq!(c.produce(batch(0, 7, 1)), Err(ErrorCode::OutOfOrderSequenceNumber), "a gap");
    assert_eq!(c.produce(batch(1, 3, 1)), Err(ErrorCode::OutOfOrderSequenceNumber), "a new epoch starts at 0");
    assert_eq!(c.produce(batch(1, 0, 1)), Ok(6));
    assert_eq!(c.produce(batch(0, 6, 1)), Err(ErrorCode::InvalidProducerEpoch), "the old epoch is fenced");
    c.assert_ends(7);
}

#[test]
fn deduplication_survives_failover_and_a_power_loss_of_every_replica() {
    let mut c = Cluster::new();
    for seq in 0..5 {
        assert_eq!(c.produce(batch(0, seq, 1)), Ok(i64::from(seq)));
    }

    let old_leader = c.leader();
    c.crash(old_leader);
    c.elect();
    assert_ne!(c.leader(), old_leader);
    for seq in 0..5 {
        assert_eq!(c.produce(batch(0, seq, 1)), Ok(i64::from(seq)), "retry of {seq} on the new leader");
    }
    assert_eq!(c.produce(batch(0, 6, 1)), Err(ErrorCode::OutOfOrderSequenceNumber));
    assert_eq!(c.produce(batch(0, 5, 1)), Ok(5));
    c.start(old_leader);
    c.settle();

    for id in IDS {
        c.crash(id);
    }
    for id in IDS {
        c.start(id);
    }
    c.elect();
    // The window holds the last five batches: 1..=5.
    assert_eq!(c.produce(batch(0, 0, 1)), Err(ErrorCode::OutOfOrderSequenceNumber), "0 left the window");
    for seq in 1..=5 {
        assert_eq!(c.produce(batch(0, seq, 1)), Ok(i64::from(seq)), "retry of {seq} after the restart");
    }
    assert_eq!(c.produce(batch(0, 6, 1)), Ok(6));
    c.assert_ends(7);
}
