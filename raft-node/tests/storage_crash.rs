//! Random operation sequences against the raft log on a `FaultyDisk`, crashed
//! and reopened again and again, between operations and (by an armed power
//! failure) inside them and inside recovery itself. After every recovery:
//! - the log equals the log as it stood at some moment between the last
//!   durability point (sync, hard state write, snapshot install, open) and the
//!   crash, entry by entry (so every synced entry is there, bit-exact, a prefix
//!   of the unsynced writes may be, nothing after a gap, no torn entry);
//! - every entry reads back (checksums verified) with the right term;
//! - the hard state, conf state and snapshot are the last ones written (or,
//!   for an operation the crash interrupted, either its old or its new value;
//!   a snapshot install is all or nothing).
//!
//! A failure names its seed; `STORAGE_CRASH_SEED=<seed>` replays just it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::Storage;
use raft_node::storage::{Disk, FaultyDisk, FileDisk, LogConfig, RaftLog};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEEDS: u64 = 2000;
const OPS_PER_SEED: usize = 60;
const PREFIX: &str = "topic-0.";

/// What the log should hold, independent of the implementation.
#[derive(Clone, Debug, Default)]
struct Model {
    snapshot_index: u64,
    snapshot_term: u64,
    snapshot_data: Bytes,
    /// The entries after `base`, which is the last snapshot *installed* (a
    /// compaction keeps them here: it moves `snapshot_index`, not `base`).
    base: u64,
    entries: Vec<Entry>,
    hard_state: HardState,
    conf_state: ConfState,
}

impl Model {
    fn last_index(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// The term of `index`, which is the snapshot index or an entry after it.
    fn term(&self, index: u64) -> u64 {
        if index == self.snapshot_index {
            return self.snapshot_term;
        }
        self.entries[(index - self.base - 1) as usize].term
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::TruncateFrom(index) => self.entries.truncate((index - self.base - 1) as usize),
            Step::Push(entry) => self.entries.push(entry.clone()),
        }
    }
}

/// One logical step since the last durability point: a crash may leave the
/// log as it stood after any of them.
#[derive(Clone, Debug)]
enum Step {
    TruncateFrom(u64),
    Push(Entry),
}

/// The operation a power failure interrupted, and what it would have made.
#[derive(Debug, Default)]
enum Pending {
    #[default]
    None,
    HardState(HardState),
    ConfState(ConfState),
    Compaction {
        index: u64,
        term: u64,
        data: Bytes,
    },
    Install(Box<Model>),
}

struct Run {
    rng: ChaCha8Rng,
    disk: FaultyDisk,
    config: LogConfig,
    log: RaftLog,
    model: Model,
    /// The model's entries at the last durability point, and the steps since.
    durable_entries: Vec<Entry>,
    steps: Vec<Step>,
    pending: Pending,
    /// The current leader term of the simulated cluster.
    term: u64,
    stats: Stats,
}

/// How often the interesting cases happened, so the test proves it covers them.
#[derive(Default, Clone, Copy, Debug)]
struct Stats {
    crashes: u64,
    /// Power failures inside an operation, and inside recovery.
    mid_op_crashes: u64,
    mid_recovery_crashes: u64,
    torn_tails: u64,
    /// Recoveries that lost some unsynced steps but kept others.
    partial_recoveries: u64,
    overwrites: u64,
    rolls_seen: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Self) {
        self.crashes += o.crashes;
        self.mid_op_crashes += o.mid_op_crashes;
        self.mid_recovery_crashes += o.mid_recovery_crashes;
        self.torn_tails += o.torn_tails;
        self.partial_recoveries += o.partial_recoveries;
        self.overwrites += o.overwrites;
        self.rolls_seen += o.rolls_seen;
    }
}

type OpResult = Result<(), raft_node::storage::LogError>;

impl Run {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let disk = FaultyDisk::new(rng.next_u64());
        let config = LogConfig {
            segment_bytes: [256, 1000, 4096, 1 << 16][rng.gen_range(0..4)],
            index_interval_bytes: [1, 100, 4096][rng.gen_range(0..3)],
            cache_bytes: [0, 3000, 1 << 20][rng.gen_range(0..3)],
        };
        let (log, report) = RaftLog::open(Arc::new(disk.clone()), PREFIX, config.clone()).unwrap();
        assert_eq!(report, Default::default());
        Self {
            rng,
            disk,
            config,
            log,
            model: Model::default(),
            durable_entries: Vec::new(),
            steps: Vec::new(),
            pending: Pending::None,
            term: 1,
            stats: Stats::default(),
        }
    }

    fn durability_point(&mut self) {
        self.durable_entries = self.model.entries.clone();
        self.steps.clear();
    }

    fn step(&mut self, step: Step) {
        self.model.apply(&step);
        self.steps.push(step);
    }

    fn random_entry(&mut self, index: u64) -> Entry {
        let entry_type = [EntryType::EntryNormal, EntryType::EntryConfChange][self.rng.gen_range(0..2)];
        // Mostly small, sometimes several sectors, so torn writes cut inside entries.
        let len = if self.rng.gen_bool(0.2) { self.rng.gen_range(500..3000) } else { self.rng.gen_range(0..200) };
        let mut data = vec![0; len];
        self.rng.fill_bytes(&mut data);
        let context = Bytes::from(vec![self.rng.gen(); self.rng.gen_range(0..4)]);
        Entry { index, term: self.term, entry_type, data: data.into(), context, ..Default::default() }
    }

    fn append(&mut self) -> OpResult {
        let (commit, last) = (self.model.hard_state.commit, self.model.last_index());
        let start = if last > commit && self.rng.gen_bool(0.3) {
            // A new leader overwrites an uncommitted suffix.
            self.term += 1;
            self.rng.gen_range(commit + 1..=last)
        } else {
            last + 1
        };
        let count = self.rng.gen_range(1..=8);
        let entries: Vec<Entry> = (start..start + count).map(|i| self.random_entry(i)).collect();
        // Each step is a state the log may be left in, whether or not this completes.
        if start <= last {
            self.stats.overwrites += 1;
            self.step(Step::TruncateFrom(start));
        }
        for entry in &entries {
            self.step(Step::Push(entry.clone()));
        }
        self.log.append(&entries)
    }

    fn sync(&mut self) -> OpResult {
        self.log.sync()?;
        self.durability_point();
        Ok(())
    }

    fn set_hard_state(&mut self) -> OpResult {
        let old = self.model.hard_state.clone();
        let mut hs = HardState::default();
        hs.term = old.term.max(self.term);
        hs.vote = if hs.term == old.term { old.vote } else { self.rng.gen_range(0..4) };
        hs.commit = self.rng.gen_range(old.commit..=self.model.last_index());
        self.pending = Pending::HardState(hs.clone());
        self.log.set_hard_state(hs.clone())?;
        self.model.hard_state = hs;
        self.durability_point();
        Ok(())
    }

    fn set_conf_state(&mut self) -> OpResult {
        let cs = ConfState {
            voters: (1..=self.rng.gen_range(1..=5)).collect(),
            learners: vec![self.rng.gen_range(10..20)],
            ..Default::default()
        };
        self.pending = Pending::ConfState(cs.clone());
        self.log.set_conf_state(cs.clone())?;
        self.model.conf_state = cs;
        Ok(())
    }

    fn compact(&mut self) -> OpResult {
        let commit = self.model.hard_state.commit;
        if commit <= self.model.snapshot_index {
            return Ok(());
        }
        let index = self.rng.gen_range(self.model.snapshot_index + 1..=commit);
        let term = self.model.term(index);
        let data = Bytes::from(format!("state through {index}"));
        self.pending = Pending::Compaction { index, term, data: data.clone() };
        self.log.compact_through(index, term, data.clone())?;
        self.model.snapshot_index = index;
        self.model.snapshot_term = term;
        self.model.snapshot_data = data;
        Ok(())
    }

    fn install_snapshot(&mut self) -> OpResult {
        // A snapshot from a leader of a newer term, beyond our commit.
        self.term += 1;
        let (commit, last) = (self.model.hard_state.commit, self.model.last_index());
        let index = (commit + 1).max(last) + self.rng.gen_range(0..5);
        let mut snapshot = Snapshot { data: Bytes::from(format!("leader state at {index}")), ..Default::default() };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = self.term;
        meta.mut_conf_state().voters = vec![1, 2, 3];
        let mut after = self.model.clone();
        after.snapshot_index = index;
        after.snapshot_term = self.term;
        after.snapshot_data = snapshot.data.clone();
        after.base = index;
        after.entries.clear();
        after.hard_state.commit = index;
        after.hard_state.term = after.hard_state.term.max(self.term);
        after.conf_state = snapshot.get_metadata().get_conf_state().clone();
        self.pending = Pending::Install(Box::new(after.clone()));
        self.log.apply_snapshot(snapshot)?;
        self.model = after;
        self.durability_point();
        Ok(())
    }

    /// Checks the live log against the model.
    fn check_live(&self) {
        let m = &self.model;
        assert_eq!(self.log.first_index(), m.snapshot_index + 1);
        assert_eq!(self.log.last_index(), m.last_index());
        let skip = (m.snapshot_index - m.base) as usize;
        let got = self.log.entries(m.snapshot_index + 1, m.last_index() + 1, None).unwrap();
        assert!(got == m.entries[skip..], "live log differs from the model");
    }

    /// Opens the log after a crash, possibly losing power inside recovery too.
    fn reopen(&mut self) -> raft_node::storage::RecoveryReport {
        loop {
            if self.rng.gen_bool(0.2) {
                self.disk.set_power_failure(Some(self.rng.gen_range(0..6)));
            }
            let opened = RaftLog::open(Arc::new(self.disk.clone()), PREFIX, self.config.clone());
            self.disk.set_power_failure(None);
            match opened {
                Ok((log, report)) => {
                    self.log = log;
                    return report;
                }
                Err(e) => {
                    assert!(self.disk.is_down(), "reopen failed: {e}");
                    self.stats.mid_recovery_crashes += 1;
                    self.disk.crash();
                }
            }
        }
    }

    fn crash_and_reopen(&mut self) {
        self.stats.crashes += 1;
        self.stats.rolls_seen += self.log.segments().len().saturating_sub(1) as u64;
        self.disk.crash();
        let report = self.reopen();
        let log = &self.log;
        // An interrupted operation left its old or its new value.
        match std::mem::take(&mut self.pending) {
            Pending::None => {}
            Pending::HardState(hs) if log.hard_state() == &hs => self.model.hard_state = hs,
            Pending::ConfState(cs) if log.conf_state() == &cs => self.model.conf_state = cs,
            Pending::Compaction { index, term, data } if log.snapshot().get_metadata().index == index => {
                self.model.snapshot_index = index;
                self.model.snapshot_term = term;
                self.model.snapshot_data = data;
            }
            Pending::Install(after) if log.snapshot().get_metadata().index == after.snapshot_index => {
                self.model = *after;
                self.durable_entries.clear();
                self.steps.clear();
            }
            Pending::HardState(_) | Pending::ConfState(_) | Pending::Compaction { .. } | Pending::Install(_) => {}
        }
        let m = &mut self.model;
        // The state files are written synchronously: exactly the last values.
        assert_eq!(log.hard_state(), &m.hard_state, "{report:?}");
        assert_eq!(log.conf_state(), &m.conf_state);
        let snap = log.snapshot().get_metadata();
        assert_eq!((snap.index, snap.term), (m.snapshot_index, m.snapshot_term));
        assert_eq!(log.snapshot().data, m.snapshot_data);
        assert_eq!(log.first_index(), m.snapshot_index + 1);
        let first = m.snapshot_index + 1;
        let recovered = log.entries(first, log.last_index() + 1, None).unwrap();
        for index in first - 1..=log.last_index() {
            let want =
                if index == m.snapshot_index { m.snapshot_term } else { recovered[(index - first) as usize].term };
            assert_eq!(Storage::term(log, index), Ok(want));
        }
        let segments = log.segments();
        assert!(segments[0].first_index <= first, "{segments:?}");
        for pair in segments.windows(2) {
            assert_eq!(pair[0].last_index + 1, pair[1].first_index, "{segments:?}");
        }
        // Replay the steps since the durability point; the recovered log must
        // equal the model at one of those moments.
        let skip = (m.snapshot_index - m.base) as usize;
        let mut candidate = m.clone();
        candidate.entries = self.durable_entries.clone();
        let matches = |c: &Model| c.entries.len() >= skip && c.entries[skip..] == recovered[..];
        let mut found = matches(&candidate);
        let mut kept = 0;
        for step in &self.steps {
            if found {
                break;
            }
            candidate.apply(step);
            kept += 1;
            found = matches(&candidate);
        }
        assert!(
            found,
            "recovered log (last index {}) is no state between the last durability point and the crash \
             ({} steps since; {report:?})",
            log.last_index(),
            self.steps.len()
        );
        self.stats.torn_tails += u64::from(report.torn_tail.is_some());
        self.stats.partial_recoveries += u64::from(0 < kept && kept < self.steps.len());
        m.entries = candidate.entries;
        // A new leader term after a restart: the lost suffix may be rewritten differently.
        self.term += 1;
        self.durability_point();
    }

    fn run(&mut self) {
        for _ in 0..OPS_PER_SEED {
            let op = self.rng.gen_range(0..100);
            if op >= 81 {
                self.crash_and_reopen();
                continue;
            }
            if self.rng.gen_bool(0.15) {
                self.disk.set_power_failure(Some(self.rng.gen_range(0..8)));
            }
            let result = match op {
                0..=44 => self.append(),
                45..=59 => self.sync(),
                60..=71 => self.set_hard_state(),
                72..=76 => self.compact(),
                77..=78 => self.install_snapshot(),
                _ => self.set_conf_state(),
            };
            self.disk.set_power_failure(None);
            match result {
                Ok(()) => {
                    self.pending = Pending::None;
                    self.check_live();
                }
                Err(e) => {
                    assert!(self.disk.is_down(), "operation failed: {e}");
                    self.stats.mid_op_crashes += 1;
                    self.crash_and_reopen();
                }
            }
        }
        self.crash_and_reopen();
    }
}

fn run_seed(seed: u64) -> Stats {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut run = Run::new(seed);
        run.run();
        run.stats
    }));
    result.unwrap_or_else(|_| panic!("failed at seed {seed}; replay with STORAGE_CRASH_SEED={seed}"))
}

#[test]
fn recovery_after_random_crashes_keeps_a_state_between_last_sync_and_crash() {
    if let Some(seed) = std::env::var("STORAGE_CRASH_SEED").ok().and_then(|s| s.parse().ok()) {
        run_seed(seed);
        return;
    }
    let mut stats = Stats::default();
    for seed in 0..SEEDS {
        stats += run_seed(seed);
    }
    // Every case the properties are about must actually have happened, often.
    let Stats { crashes, mid_op_crashes, mid_recovery_crashes, torn_tails, partial_recoveries, overwrites, rolls_seen } =
        stats;
    let enough = SEEDS / 2;
    let cases = [mid_op_crashes, mid_recovery_crashes, torn_tails, partial_recoveries, overwrites, rolls_seen];
    assert!(crashes > SEEDS * 5 && cases.iter().all(|&n| n > enough), "too few interesting cases: {stats:?}");
}

/// The same log over real files, closed and reopened (no crash): what the
/// simulation proves must also hold on the real `Disk`.
#[test]
fn file_disk_log_round_trips() {
    for seed in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let disk: Arc<dyn Disk> = Arc::new(FileDisk::new(dir.path().join("p")).unwrap());
        let mut run = Run::new(seed);
        for _ in 0..40 {
            run.append().unwrap();
        }
        run.set_hard_state().unwrap();
        let config = LogConfig { segment_bytes: 2048, ..run.config.clone() };
        let (mut log, _) = RaftLog::open(disk.clone(), PREFIX, config.clone()).unwrap();
        log.append(&run.model.entries).unwrap();
        log.set_hard_state(run.model.hard_state.clone()).unwrap();
        assert!(log.segments().len() > 1);
        drop(log);
        let (log, report) = RaftLog::open(disk, PREFIX, config).unwrap();
        assert_eq!(report, Default::default());
        assert_eq!(log.entries(1, log.last_index() + 1, None).unwrap(), run.model.entries);
        assert_eq!(log.hard_state(), &run.model.hard_state);
    }
}

/// A log whose disk lost power reads as a power failure, not as a damaged
/// log: a corrupt record would blame data the crash never touched.
#[test]
fn reads_on_a_disk_that_lost_power_fail_as_power_failure() {
    let disk = FaultyDisk::new(1);
    let entry = |index| Entry { index, term: 1, data: vec![7; 100].into(), ..Default::default() };
    let (mut log, _) = RaftLog::open(Arc::new(disk.clone()), PREFIX, LogConfig::default()).unwrap();
    log.append(&(1..=5).map(entry).collect::<Vec<_>>()).unwrap();
    log.sync().unwrap();
    drop(log);
    // Reopened, so the entries are read from the disk, not a cache.
    let (mut log, _) = RaftLog::open(Arc::new(disk.clone()), PREFIX, LogConfig::default()).unwrap();
    disk.set_power_failure(Some(0));
    assert!(log.append(&[entry(6)]).is_err());
    assert!(disk.is_down());
    match log.entries(1, 6, None) {
        Err(raft_node::storage::LogError::Io { source, .. }) => assert_eq!(source.to_string(), "power failure"),
        other => panic!("expected the power failure, got {other:?}"),
    }
}

#[test]
fn raft_log_is_send() {
    fn send<T: Send>() {}
    send::<RaftLog>();
}
