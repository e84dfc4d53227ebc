//! A partition replica's raft id: its broker's id in the low 32 bits and the
//! replica's generation (the move that added it to the partition, from the
//! metadata) above. A broker whose replica was moved off and later added
//! back joins as a new member, so a message delayed from or to its old
//! replica is refused as a stranger's: the group never counts the old log as
//! the new one's. Replicas a partition was created with are generation 0:
//! their raft id is the broker id, as the metadata group's are.

pub fn replica_id(broker: u64, generation: u32) -> u64 {
    debug_assert!(broker <= u64::from(u32::MAX), "broker ids are 31-bit");
    (u64::from(generation) << 32) | broker
}

/// The broker a raft id belongs to (the transport's address).
pub fn broker_of(replica_id: u64) -> u64 {
    replica_id & u64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_zero_is_the_broker_id_and_others_differ() {
        assert_eq!(replica_id(3, 0), 3);
        assert_ne!(replica_id(3, 2), replica_id(3, 1));
        assert_eq!(broker_of(replica_id(3, 2)), 3);
        assert_eq!(broker_of(replica_id(i32::MAX as u64, u32::MAX)), i32::MAX as u64);
    }
}
