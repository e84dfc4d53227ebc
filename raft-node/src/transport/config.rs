use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::faults::LinkFaults;
use super::frame::{body_len, BODY_OVERHEAD, ENTRY_OVERHEAD};

#[derive(Clone)]
pub struct TransportConfig {
    /// Payloads waiting per peer; beyond this `send` drops.
    pub queue_capacity: usize,
    /// Received payloads waiting for the node; beyond this the readers stop
    /// reading, and the senders' queues fill and drop.
    pub inbound_capacity: usize,
    /// The cap on a frame body, for what we write and what we accept.
    pub max_frame_bytes: u32,
    /// First reconnect delay; doubled per failed attempt up to `backoff_max`,
    /// then jittered down by up to half.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Bounds a connect plus handshake, a frame write, and an inbound handshake:
    /// past it the connection is given up.
    pub io_timeout: Duration,
    /// Seeds the backoff jitter, so a simulation replays.
    pub seed: u64,
    /// `None` in production.
    pub faults: Option<Arc<dyn LinkFaults>>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            queue_capacity: 4096,
            inbound_capacity: 4096,
            max_frame_bytes: 64 << 20,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            io_timeout: Duration::from_secs(5),
            seed: 0,
            faults: None,
        }
    }
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("queue_capacity", &self.queue_capacity)
            .field("inbound_capacity", &self.inbound_capacity)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("io_timeout", &self.io_timeout)
            .field("seed", &self.seed)
            .field("faults", &self.faults.is_some())
            .finish()
    }
}

impl TransportConfig {
    /// The largest payload that fits a frame on its own.
    pub fn max_payload_bytes(&self) -> usize {
        (self.max_frame_bytes as usize).saturating_sub(BODY_OVERHEAD + ENTRY_OVERHEAD)
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.queue_capacity == 0 || self.inbound_capacity == 0 {
            return Err("queue capacities must be positive".into());
        }
        if (self.max_frame_bytes as usize) < body_len([1]) {
            return Err(format!("max_frame_bytes {} cannot hold a one-byte payload", self.max_frame_bytes));
        }
        if self.backoff_base.is_zero() || self.backoff_base > self.backoff_max {
            return Err(format!("backoff needs 0 < base {:?} <= max {:?}", self.backoff_base, self.backoff_max));
        }
        if self.io_timeout.is_zero() {
            return Err("io_timeout must be positive".into());
        }
        Ok(())
    }
}
