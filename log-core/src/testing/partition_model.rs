//! The reference model of the partition log machine and its driver: random
//! operation sequences run against `PartitionLog` and against a model that
//! keeps every entry ever appended and recomputes everything from scratch; the
//! two are compared after every step. `MODEL_DEBUG=1` prints each case's
//! operations. Driven by `log-core/tests/partition_model.rs` and by the fuzz
//! target in `fuzz/`.

use crate::partition::{DataEntry, EntryKind, PartitionLog};
use crate::producer::{ProducerBatch, SequenceCheck, SequenceError, WINDOW};
use crate::ErrorCode;
use arbitrary::{Arbitrary, Unstructured};

#[derive(Debug, Clone, Copy)]
pub enum Seq {
    /// The sequence that continues the producer's last batch.
    Next,
    /// A retry of one of the producer's recent batches.
    Retry(u8),
    /// Anything: usually a gap.
    Any(u8),
}

#[derive(Debug, Clone, Copy)]
pub enum Op {
    Produce {
        count: u8,
        ts: u8,
        producer: Option<(u8, u8, Seq)>,
    },
    Noop,
    /// A new leader's entry replaces part of the uncommitted suffix.
    Overwrite {
        back: u8,
        count: u8,
    },
    Commit {
        ahead: u8,
    },
    Compact {
        back: u8,
    },
    /// Rebuild the replica from a snapshot plus the log after it.
    Restore {
        back: u8,
    },
    Locate {
        offset: u8,
    },
    LocateTimestamp {
        ts: u8,
    },
}

/// Weighted towards idempotent produces that mostly continue their sequence,
/// so that windows fill up and retries reach the window's edge.
impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let (kind, a, b) = (u.arbitrary::<u8>()? % 20, u.arbitrary::<u8>()?, u.arbitrary::<u8>()?);
        Ok(match kind {
            0..=9 => {
                let (pid, epoch, pick) = (u.arbitrary::<u8>()?, u.arbitrary::<u8>()?, u.arbitrary::<u8>()?);
                let seq = match pick % 8 {
                    0..=4 => Seq::Next,
                    5 | 6 => Seq::Retry(pick / 8),
                    _ => Seq::Any(pick / 8),
                };
                let producer = (pid % 4 != 0).then_some((pid, epoch, seq));
                Op::Produce { count: a, ts: b, producer }
            }
            10 => Op::Noop,
            11 => Op::Overwrite { back: a, count: b },
            12..=14 => Op::Commit { ahead: a },
            15 => Op::Compact { back: a },
            16 => Op::Restore { back: a },
            17 | 18 => Op::Locate { offset: a },
            _ => Op::LocateTimestamp { ts: a },
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    count: i64,
    ts: i64,
    producer: Option<ProducerBatch>,
}

/// The obviously-correct reference: all entries ever appended (index = position + 1).
#[derive(Default)]
struct Model {
    entries: Vec<Entry>,
    committed: u64,
    compacted: u64,
    /// Where the replica's running maximum timestamp starts: its last restore.
    origin: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Kafka offset at which entry `index` begins.
    fn base(&self, index: u64) -> i64 {
        self.entries[..(index - 1) as usize].iter().map(|e| e.count).sum()
    }

    /// `bases()[i - 1]` is `base(i)`, for every index up to `last() + 1`.
    fn bases(&self) -> Vec<i64> {
        std::iter::once(0)
            .chain(self.entries.iter().scan(0, |sum, e| {
                *sum += e.count;
                Some(*sum)
            }))
            .collect()
    }

    fn hw(&self) -> i64 {
        self.base(self.committed + 1)
    }

    fn check(&self, b: &ProducerBatch) -> Result<SequenceCheck, SequenceError> {
        let bases = self.bases();
        let mine: Vec<(ProducerBatch, i64)> = (0..self.entries.len())
            .filter_map(|i| self.entries[i].producer.map(|p| (p, bases[i])))
            .filter(|(p, _)| p.producer_id == b.producer_id)
            .collect();
        let Some((last, _)) = mine.last() else { return Ok(SequenceCheck::Append) };
        if b.epoch < last.epoch {
            return Err(SequenceError::Fenced { current: last.epoch, got: b.epoch });
        }
        if b.epoch > last.epoch {
            return if b.first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder { expected: 0, got: b.first_seq })
            };
        }
        let window: Vec<_> = mine.iter().rev().take_while(|(p, _)| p.epoch == last.epoch).take(WINDOW).collect();
        if let Some((_, offset)) =
            window.iter().find(|(p, _)| p.first_seq == b.first_seq && p.last_seq() == b.last_seq())
        {
            return Ok(SequenceCheck::Duplicate { base_offset: *offset });
        }
        let expected = if last.last_seq() == i32::MAX { 0 } else { last.last_seq() + 1 };
        if b.first_seq == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder { expected, got: b.first_seq })
        }
    }

    fn kind(&self, index: u64) -> EntryKind {
        let e = self.entries[(index - 1) as usize];
        if e.count == 0 {
            return EntryKind::Empty;
        }
        EntryKind::Data(DataEntry {
            stamped_base_offset: self.base(index),
            record_count: e.count as i32,
            max_timestamp: e.ts,
            producer: e.producer,
        })
    }

    fn producer_batch(&self, count: i32, (pid, epoch, seq): (u8, u8, Seq)) -> ProducerBatch {
        let producer_id = i64::from(pid % 2);
        let mine: Vec<ProducerBatch> =
            self.entries.iter().filter_map(|e| e.producer).filter(|p| p.producer_id == producer_id).collect();
        match seq {
            Seq::Next => match mine.last() {
                Some(l) => ProducerBatch {
                    producer_id,
                    epoch: l.epoch,
                    first_seq: l.last_seq().wrapping_add(1).max(0),
                    record_count: count,
                },
                None => ProducerBatch { producer_id, epoch: i16::from(epoch % 3), first_seq: 0, record_count: count },
            },
            // Up to one batch older than the window: the boundary matters.
            Seq::Retry(k) if !mine.is_empty() => mine[mine.len() - 1 - (k as usize % mine.len().min(WINDOW + 1))],
            Seq::Retry(_) | Seq::Any(_) => {
                let first_seq = if let Seq::Any(s) = seq { i32::from(s % 8) } else { 0 };
                // Mostly the current epoch; sometimes an older or newer one.
                let epoch = match mine.last() {
                    Some(l) if epoch % 4 != 0 => l.epoch,
                    _ => i16::from(epoch % 3),
                };
                ProducerBatch { producer_id, epoch, first_seq, record_count: count }
            }
        }
    }
}

fn assert_same(log: &PartitionLog, model: &Model) {
    assert_eq!(log.last_index(), model.last(), "last index");
    assert_eq!(log.committed_index(), model.committed, "committed");
    assert_eq!(log.first_index(), model.compacted + 1, "first index");
    assert_eq!(log.next_offset(), model.base(model.last() + 1), "next offset");
    assert_eq!(log.high_watermark(), model.hw(), "high watermark");
    assert_eq!(log.log_start_offset(), model.base(model.compacted + 1), "log start");
    let bases = model.bases();
    for index in model.compacted + 1..=model.last() {
        assert_eq!(log.base_offset_of(index), Some(bases[(index - 1) as usize]), "base offset of {index}");
    }
}

/// Runs `ops` against `PartitionLog` and the model, comparing them after every step;
/// panics on the first disagreement.
pub fn run(ops: &[Op]) {
    if std::env::var_os("MODEL_DEBUG").is_some() {
        eprintln!("{ops:#?}");
    }
    let mut log = PartitionLog::default();
    let mut model = Model::default();
    for op in ops {
        match *op {
            Op::Produce { count, ts, producer } => {
                let count = i64::from(count % 4 + 1);
                let batch = producer.map(|p| model.producer_batch(count as i32, p));
                if let Some(b) = &batch {
                    let got = log.check_producer(b, std::iter::empty());
                    assert_eq!(got, model.check(b), "producer check of {b:?}");
                    if got != Ok(SequenceCheck::Append) {
                        continue;
                    }
                }
                let entry = Entry {
                    count: batch.map_or(count, |b| i64::from(b.record_count)),
                    ts: i64::from(ts),
                    producer: batch,
                };
                model.entries.push(entry);
                let index = model.last();
                assert_eq!(log.append(index, &model.kind(index)), Ok(model.base(index)));
            }
            Op::Noop => {
                model.entries.push(Entry { count: 0, ts: 0, producer: None });
                assert_eq!(log.append(model.last(), &EntryKind::Empty), Ok(model.base(model.last())));
            }
            Op::Overwrite { back, count } => {
                let uncommitted = model.last() - model.committed;
                let index = model.committed + 1 + u64::from(back) % (uncommitted + 1);
                model.entries.truncate((index - 1) as usize);
                model.entries.push(Entry { count: i64::from(count % 3), ts: 7, producer: None });
                assert_eq!(log.append(index, &model.kind(index)), Ok(model.base(index)));
                if model.committed > 0 {
                    assert!(log.append(model.committed, &EntryKind::Empty).is_err(), "committed entries never change");
                }
            }
            Op::Commit { ahead } => {
                let index = model.committed + u64::from(ahead) % (model.last() - model.committed + 1);
                model.committed = index;
                assert_eq!(log.commit(index), Ok(model.hw()));
            }
            Op::Compact { back } => {
                let index = model.committed - u64::from(back) % (model.committed - model.compacted + 1);
                log.compact(index).expect("compact within the committed log");
                model.compacted = model.compacted.max(index);
            }
            Op::Restore { back } => {
                let index = model.committed - u64::from(back) % (model.committed - model.compacted + 1);
                let snapshot = log.snapshot(index).expect("snapshot within the committed log");
                let mut restored = PartitionLog::from_snapshot(&snapshot);
                for i in index + 1..=model.last() {
                    restored.append(i, &model.kind(i)).expect("replay");
                }
                restored.commit(model.committed).expect("recommit");
                model.compacted = index;
                model.origin = index + 1;
                log = restored;
            }
            Op::Locate { offset } => {
                let offset = i64::from(offset) - 4;
                let expected = if offset < model.base(model.compacted + 1) || offset > model.base(model.last() + 1) {
                    Err(ErrorCode::OffsetOutOfRange)
                } else if offset >= model.hw() {
                    Ok(None)
                } else {
                    Ok((model.compacted + 1..=model.committed)
                        .find(|&i| model.base(i) + model.entries[(i - 1) as usize].count > offset))
                };
                assert_eq!(log.locate(offset), expected, "locate {offset}");
            }
            Op::LocateTimestamp { ts } => {
                let expected = (log.first_index()..=model.committed).find(|&i| {
                    (model.origin.max(1)..=i).any(|j| {
                        let e = model.entries[(j - 1) as usize];
                        e.count > 0 && e.ts >= i64::from(ts)
                    })
                });
                assert_eq!(log.locate_timestamp(i64::from(ts)), expected, "timestamp {ts}");
            }
        }
        assert_same(&log, &model);
    }
}
