//! Producer ids, handed to brokers in blocks through the metadata group (as
//! Kafka's AllocateProducerIds): each broker then answers InitProducerId from
//! its block without a round of consensus per producer. Blocks are taken in
//! log order from one counter, so no two ever overlap, on any broker, across
//! any restart. Commands carry no reply, so the proposer names its request
//! with a token that the block keeps: the broker takes only the block with
//! its token, never one it may have used before a restart, which a view
//! lagging behind the log could otherwise show it as new.

use serde::{Deserialize, Serialize};

/// Ids per block: Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The ids `first .. first + PRODUCER_ID_BLOCK_SIZE`, and the token of the
/// request that allocated them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub token: u64,
}

impl ProducerIdBlock {
    /// One past the last id of the block.
    pub fn end(&self) -> i64 {
        self.first.saturating_add(PRODUCER_ID_BLOCK_SIZE)
    }

    pub fn contains(&self, id: i64) -> bool {
        (self.first..self.end()).contains(&id)
    }
}

/// The block after `next`, or `None` when ids are exhausted (the block would
/// reach past `i64::MAX`).
pub(super) fn allocate(next: i64, token: u64) -> Option<ProducerIdBlock> {
    next.checked_add(PRODUCER_ID_BLOCK_SIZE).map(|_| ProducerIdBlock { first: next, token })
}

#[cfg(test)]
mod tests {
    //! Allocation itself is checked against the reference model in
    //! `testing::metadata_model`; here, the edges it does not reach.
    use super::*;
    use crate::metadata::{ClusterMetadata, Command, MetadataError};

    #[test]
    fn exhaustion_is_refused() {
        assert_eq!(allocate(0, 7), Some(ProducerIdBlock { first: 0, token: 7 }));
        let last = i64::MAX - PRODUCER_ID_BLOCK_SIZE;
        assert_eq!(allocate(last, 7), Some(ProducerIdBlock { first: i64::MAX - 1000, token: 7 }));
        assert_eq!(allocate(last + 1, 7), None);
        assert_eq!(MetadataError::ProducerIdsExhausted.code(), crate::ErrorCode::UnknownServerError);
    }

    #[test]
    fn snapshots_from_before_producer_ids_decode_with_none_allocated() {
        let old = br#"{"epoch":1,"brokers":{"1":{"host":"h","port":1,"rack":null}},"topics":{}}"#;
        let m = ClusterMetadata::decode(old).unwrap();
        assert!(!m.is_allocated_producer_id(0));
        assert_eq!(m.producer_id_block(1), None);
    }

    #[test]
    fn snapshots_with_overlapping_or_unallocated_blocks_are_refused() {
        let mut m = ClusterMetadata::default();
        for id in [1, 2] {
            m.apply(Command::RegisterBroker { id, host: "h".into(), port: 1, rack: None, raft: None }).unwrap();
            m.apply(Command::AllocateProducerIds { broker: id, token: 5 }).unwrap();
        }
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(
            text.contains(r#""producer_id_blocks":{"1":{"first":0,"token":5},"2":{"first":1000,"token":5}}"#),
            "{text}"
        );
        for broken in [
            text.replace(r#""first":1000"#, r#""first":500"#), // overlaps broker 1's
            text.replace(r#""first":1000"#, r#""first":2000"#), // beyond the counter
            text.replace(r#""first":1000"#, r#""first":-1000"#), // negative
            text.replace(r#""2":{"first""#, r#""3":{"first""#), // unregistered broker
            text.replace(r#""next_producer_id":2000"#, r#""next_producer_id":1999"#), // counter behind a block
        ] {
            assert_ne!(broken, text);
            assert!(ClusterMetadata::decode(broken.as_bytes()).is_err(), "{broken}");
        }
    }
}
