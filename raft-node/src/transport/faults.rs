//! The simulator's hook into the transport: madsim's TCP neither drops nor
//! reorders, so the nemesis decides the fate of each outbound payload here.

use std::time::Duration;

/// What happens to one outbound payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkDecision {
    Deliver,
    Drop,
    /// Delivered twice, back to back.
    Duplicate,
    /// Held back this long, then delivered: payloads sent meanwhile overtake it.
    Delay(Duration),
}

/// Consulted by the sender's per-peer task for every payload it takes off the
/// queue, in queue order. Must not block.
pub trait LinkFaults: Send + Sync {
    fn decide(&self, from: u64, to: u64) -> LinkDecision;
}
