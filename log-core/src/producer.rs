//! Idempotent producer state: per producer id, its epoch and the last five
//! batches it wrote, so that a retried batch is recognised and answered with
//! its original offset instead of being written twice.
//!
//! The rules follow Kafka's `ProducerAppendInfo.checkSequence`: an older epoch
//! is fenced; a new epoch starts at sequence 0; within an epoch each batch
//! continues the last one (wrapping at `i32::MAX`); a producer with no state
//! (new, or expired) may start anywhere.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// How many recent batches per producer are remembered for deduplication;
/// Kafka's `max.in.flight.requests.per.connection` limit for idempotence.
pub const WINDOW: usize = 5;

/// The producer fields of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub record_count: i32,
}

impl ProducerBatch {
    /// Sequence of the batch's last record; sequences wrap to 0 after `i32::MAX`.
    pub fn last_seq(&self) -> i32 {
        let last = i64::from(self.first_seq) + i64::from(self.record_count) - 1;
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// A remembered batch: its sequence range and where it landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Written {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    epoch: i16,
    /// Oldest first, at most `WINDOW`, all of `epoch`.
    batches: VecDeque<Written>,
}

/// What the leader should do with a batch that passed the sequence check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// New data: append it.
    Append,
    /// A retry of a batch already in the log: answer with its offset.
    Duplicate { base_offset: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer epoch {got} is older than the current epoch {current}")]
    Fenced { current: i16, got: i16 },
    #[error("out of order sequence: expected {expected}, got {got}")]
    OutOfOrder { expected: i32, got: i32 },
}

impl SequenceError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SequenceError::Fenced { .. } => ErrorCode::InvalidProducerEpoch,
            SequenceError::OutOfOrder { .. } => ErrorCode::OutOfOrderSequenceNumber,
        }
    }
}

impl ProducerEntry {
    fn check(&self, batch: &ProducerBatch) -> Result<SequenceCheck, SequenceError> {
        if batch.epoch < self.epoch {
            return Err(SequenceError::Fenced { current: self.epoch, got: batch.epoch });
        }
        let Some(last) = self.batches.back() else {
            return Ok(SequenceCheck::Append);
        };
        if batch.epoch > self.epoch {
            return match batch.first_seq {
                0 => Ok(SequenceCheck::Append),
                got => Err(SequenceError::OutOfOrder { expected: 0, got }),
            };
        }
        let (first, last_seq) = (batch.first_seq, batch.last_seq());
        if let Some(w) = self.batches.iter().find(|w| w.first_seq == first && w.last_seq == last_seq) {
            return Ok(SequenceCheck::Duplicate { base_offset: w.base_offset });
        }
        let expected = next_seq(last.last_seq);
        if first == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder { expected, got: first })
        }
    }

    /// Remembers a batch. Entries are replayed idempotently: a batch at or
    /// below the last remembered offset is already reflected and is skipped,
    /// which lets a snapshot taken later than its log position be replayed over.
    fn record(&mut self, batch: &ProducerBatch, base_offset: i64) {
        if self.batches.back().is_some_and(|w| base_offset <= w.base_offset) {
            return;
        }
        if batch.epoch != self.epoch {
            self.epoch = batch.epoch;
            self.batches.clear();
        }
        if self.batches.len() == WINDOW {
            self.batches.pop_front();
        }
        self.batches.push_back(Written { first_seq: batch.first_seq, last_seq: batch.last_seq(), base_offset });
    }
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The producer state of one partition, keyed by producer id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerTable {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerTable {
    /// Checks a batch against the remembered state, plus `pending` batches
    /// appended to the log but not yet committed (in log order, with their
    /// base offsets), as the leader sees them.
    pub fn check<'a>(
        &self,
        batch: &ProducerBatch,
        pending: impl Iterator<Item = (&'a ProducerBatch, i64)>,
    ) -> Result<SequenceCheck, SequenceError> {
        let mut entry = self.producers.get(&batch.producer_id).cloned().unwrap_or_default();
        for (p, offset) in pending.filter(|(p, _)| p.producer_id == batch.producer_id) {
            entry.record(p, offset);
        }
        entry.check(batch)
    }

    /// Applies a committed batch.
    pub fn record(&mut self, batch: &ProducerBatch, base_offset: i64) {
        self.producers.entry(batch.producer_id).or_default().record(batch, base_offset);
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first_seq: i32, record_count: i32) -> ProducerBatch {
        ProducerBatch { producer_id: 1, epoch, first_seq, record_count }
    }

    fn table(written: &[(ProducerBatch, i64)]) -> ProducerTable {
        let mut t = ProducerTable::default();
        for (b, o) in written {
            t.record(b, *o);
        }
        t
    }

    #[test]
    fn a_retry_inside_the_window_is_a_duplicate_with_its_original_offset() {
        let t = table(&[(batch(0, 0, 2), 10), (batch(0, 2, 3), 12)]);
        let none = std::iter::empty();
        assert_eq!(t.check(&batch(0, 0, 2), none), Ok(SequenceCheck::Duplicate { base_offset: 10 }));
        assert_eq!(t.check(&batch(0, 5, 1), std::iter::empty()), Ok(SequenceCheck::Append));
    }

    #[test]
    fn a_retry_older_than_the_window_is_out_of_order() {
        let written: Vec<_> = (0..6).map(|i| (batch(0, i, 1), i64::from(i) * 10)).collect();
        let t = table(&written);
        assert_eq!(
            t.check(&batch(0, 0, 1), std::iter::empty()),
            Err(SequenceError::OutOfOrder { expected: 6, got: 0 })
        );
        assert_eq!(t.check(&batch(0, 1, 1), std::iter::empty()), Ok(SequenceCheck::Duplicate { base_offset: 10 }));
    }

    #[test]
    fn gaps_are_rejected_and_old_epochs_fenced() {
        let t = table(&[(batch(3, 0, 1), 0)]);
        assert_eq!(
            t.check(&batch(3, 2, 1), std::iter::empty()).map_err(|e| e.code()),
            Err(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            t.check(&batch(2, 1, 1), std::iter::empty()).map_err(|e| e.code()),
            Err(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(t.check(&batch(4, 0, 1), std::iter::empty()), Ok(SequenceCheck::Append));
        assert!(t.check(&batch(4, 1, 1), std::iter::empty()).is_err());
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let t = table(&[(batch(0, i32::MAX - 1, 2), 0)]);
        assert_eq!(batch(0, i32::MAX - 1, 2).last_seq(), i32::MAX);
        assert_eq!(t.check(&batch(0, 0, 1), std::iter::empty()), Ok(SequenceCheck::Append));
        assert_eq!(batch(0, i32::MAX, 3).last_seq(), 1);
    }

    #[test]
    fn pending_batches_count_for_the_leader() {
        let t = table(&[(batch(0, 0, 1), 0)]);
        let pending = [(batch(0, 1, 1), 1)];
        let iter = || pending.iter().map(|(b, o)| (b, *o));
        assert_eq!(t.check(&batch(0, 1, 1), iter()), Ok(SequenceCheck::Duplicate { base_offset: 1 }));
        assert_eq!(t.check(&batch(0, 2, 1), iter()), Ok(SequenceCheck::Append));
    }

    #[test]
    fn replaying_an_already_reflected_batch_changes_nothing() {
        let mut t = table(&[(batch(0, 0, 1), 5), (batch(0, 1, 1), 6)]);
        let before = t.clone();
        t.record(&batch(0, 0, 1), 5);
        assert_eq!(t, before);
    }
}
