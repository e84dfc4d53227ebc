//! Committed offsets: the records a coordinator writes to its offsets
//! partition, and the map that replaying them builds.
//!
//! The partition's log is the store: a coordinator writes each commit as a
//! record (through raft, like any produce) and a new coordinator rebuilds the
//! map by reading the log from its start. Before reading, it writes a load
//! marker and reads through it, so the map covers everything committed before
//! it took over.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a record of the offsets topic is about (its key).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordKey {
    Offset(OffsetKey),
    /// Written by a coordinator taking over; carries nothing.
    LoadMarker,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

/// A committed offset, as OffsetCommit gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

#[derive(Debug, thiserror::Error)]
#[error("not an offsets record: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl RecordKey {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("string fields and integers always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl Committed {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("string fields and integers always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// The committed offsets of one offsets partition, by group, topic and
/// partition, each with the log offset of the record that set it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: BTreeMap<OffsetKey, (i64, Committed)>,
}

impl OffsetStore {
    /// Applies the record at `log_offset`. Records may arrive out of log order
    /// (commits answered as they complete); the later record always wins.
    pub fn apply(&mut self, log_offset: i64, key: OffsetKey, value: Option<Committed>) {
        match self.offsets.get(&key) {
            Some((at, _)) if *at > log_offset => {}
            _ => match value {
                Some(committed) => {
                    self.offsets.insert(key, (log_offset, committed));
                }
                None => {
                    self.offsets.remove(&key);
                }
            },
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        let key = OffsetKey { group: group.to_string(), topic: topic.to_string(), partition };
        self.offsets.get(&key).map(|(_, c)| c)
    }

    /// Every committed offset of `group`, by topic and partition.
    pub fn of_group<'a>(&'a self, group: &'a str) -> impl Iterator<Item = (&'a OffsetKey, &'a Committed)> + 'a {
        self.offsets.iter().filter(move |(k, _)| k.group == group).map(|(k, (_, c))| (k, c))
    }

    /// The groups with committed offsets, each once, in order.
    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.offsets.keys().map(|k| k.group.clone()).collect();
        groups.dedup();
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, partition: i32) -> OffsetKey {
        OffsetKey { group: group.into(), topic: "t".into(), partition }
    }

    fn at(offset: i64) -> Option<Committed> {
        Some(Committed { offset, leader_epoch: -1, metadata: String::new() })
    }

    #[test]
    fn records_round_trip() {
        let k = RecordKey::Offset(key("g", 3));
        assert_eq!(RecordKey::decode(&k.encode()).unwrap(), k);
        assert_eq!(RecordKey::decode(&RecordKey::LoadMarker.encode()).unwrap(), RecordKey::LoadMarker);
        let c = Committed { offset: 42, leader_epoch: 7, metadata: "m\"x".into() };
        assert_eq!(Committed::decode(&c.encode()).unwrap(), c);
        assert!(RecordKey::decode(b"\x00garbage").is_err());
    }

    #[test]
    fn the_later_record_wins_whatever_the_order_applied() {
        let records = [(5, key("g", 0), at(10)), (9, key("g", 0), at(20)), (7, key("g", 0), at(15))];
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]] {
            let mut store = OffsetStore::default();
            for i in order {
                let (log_offset, k, v) = records[i].clone();
                store.apply(log_offset, k, v);
            }
            assert_eq!(store.get("g", "t", 0).map(|c| c.offset), Some(20), "{order:?}");
        }
    }

    #[test]
    fn groups_and_their_offsets() {
        let mut store = OffsetStore::default();
        store.apply(0, key("b", 0), at(1));
        store.apply(1, key("a", 1), at(2));
        store.apply(2, key("a", 0), at(3));
        store.apply(3, key("c", 0), at(4));
        store.apply(4, key("c", 0), None);
        assert_eq!(store.groups(), vec!["a".to_string(), "b".to_string()]);
        let a: Vec<(i32, i64)> = store.of_group("a").map(|(k, c)| (k.partition, c.offset)).collect();
        assert_eq!(a, vec![(0, 3), (1, 2)]);
        assert_eq!(store.get("c", "t", 0), None);
    }
}
