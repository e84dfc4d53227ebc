//! Counters, shared between the `Transport` handle and its tasks.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter per field of `PeerStats`.
#[derive(Debug, Default)]
pub(super) struct PeerCounters {
    pub sent: AtomicU64,
    pub frames: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_io: AtomicU64,
    pub dropped_by_faults: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
}

/// What one outbound link has done, in payloads unless named otherwise.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    /// In a frame that was written out completely.
    pub sent: u64,
    /// Frames written out completely: one per write round.
    pub frames: u64,
    /// Refused by `send` because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Lost to a failed connect or write.
    pub dropped_io: u64,
    /// Dropped by the `LinkFaults` hook.
    pub dropped_by_faults: u64,
    /// Connections established: every one after the first is a reconnect.
    pub connects: u64,
    pub connect_failures: u64,
}

/// What the listening side has done, over all connections.
#[derive(Debug, Default)]
pub(super) struct InboundCounters {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub frames: AtomicU64,
    pub payloads: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InboundStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections dropped for a bad handshake or frame.
    pub rejected: u64,
    /// Frames received intact, counted before their payloads are handed on.
    pub frames: u64,
    pub payloads: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TransportStats {
    /// By peer id, for the current peers.
    pub peers: BTreeMap<u64, PeerStats>,
    pub inbound: InboundStats,
}

pub(super) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl PeerCounters {
    pub fn snapshot(&self) -> PeerStats {
        PeerStats {
            sent: get(&self.sent),
            frames: get(&self.frames),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_io: get(&self.dropped_io),
            dropped_by_faults: get(&self.dropped_by_faults),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
        }
    }
}

impl InboundCounters {
    pub fn snapshot(&self) -> InboundStats {
        InboundStats {
            accepted: get(&self.accepted),
            rejected: get(&self.rejected),
            frames: get(&self.frames),
            payloads: get(&self.payloads),
        }
    }
}
