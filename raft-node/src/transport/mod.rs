//! The broker-to-broker transport: opaque payloads between node ids over TCP.
//!
//! It knows nothing of raft. `send` never blocks: it enqueues into a bounded
//! per-peer queue and drops (counted) when that is full, so a slow or dead
//! peer holds up neither the caller nor the other peers; raft tolerates the
//! loss. One task per peer owns the outbound connection and writes all that
//! is queued as one frame per round; one task per inbound connection reads.
//! Connections are one-way (see `frame` for the wire format), so each pair of
//! brokers uses two. Payloads on one connection arrive in order; across a
//! reconnect, or through the fault hook, they may not.

mod backoff;
mod config;
mod faults;
pub mod frame;
mod inbound;
mod outbound;
mod stats;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use slog::{debug, o, Logger};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub use config::TransportConfig;
pub use faults::{LinkDecision, LinkFaults};
pub use stats::{InboundStats, PeerStats, TransportStats};

use backoff::Backoff;
use inbound::Receiving;
use outbound::Link;
use stats::{add, InboundCounters, PeerCounters};

use crate::watch;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no peer {0}")]
    UnknownPeer(u64),
    #[error("the queue to peer {0} is full")]
    QueueFull(u64),
    #[error("payload of {len} bytes exceeds the largest a frame holds, {max}")]
    TooLarge { len: usize, max: usize },
    #[error(transparent)]
    ShutDown(#[from] ShutDown),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the transport is shut down")]
pub struct ShutDown;

/// A handle on the transport; clones share it.
#[derive(Clone)]
pub struct Transport {
    shared: Arc<Shared>,
}

/// The payloads received from peers, with the sending node's id.
#[derive(Debug)]
pub struct Inbound {
    rx: mpsc::Receiver<(u64, Bytes)>,
}

struct Shared {
    node_id: u64,
    local_addr: SocketAddr,
    config: TransportConfig,
    logger: Logger,
    peers: Mutex<BTreeMap<u64, Peer>>,
    inbound: Arc<InboundCounters>,
    /// Set once; every task watches it (ours, not tokio's: see `crate::watch`).
    /// Dropped with the last handle, which ends the tasks too.
    shutdown: watch::Sender<bool>,
    /// Cloned into every task; `None` once shutting down, so that `done`
    /// reports closed exactly when the last task has ended.
    alive: Mutex<Option<mpsc::Sender<()>>>,
    done: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

/// Dropping it ends the peer's task (through `_stop`).
struct Peer {
    queue: mpsc::Sender<Bytes>,
    counters: Arc<PeerCounters>,
    _stop: oneshot::Sender<()>,
}

impl Transport {
    /// Starts serving `listener` (bound by the caller, so that port 0 works)
    /// and links to `peers`; an entry for `node_id` itself is skipped, so the
    /// whole cluster's map can be passed. Must run inside the runtime.
    pub fn start(
        node_id: u64,
        listener: TcpListener,
        peers: BTreeMap<u64, SocketAddr>,
        config: TransportConfig,
        logger: Logger,
    ) -> io::Result<(Transport, Inbound)> {
        config.validate().map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
        let local_addr = listener.local_addr()?;
        let logger = logger.new(o!("node" => node_id));
        let (inbox, rx) = mpsc::channel(config.inbound_capacity);
        let (alive, done) = mpsc::channel(1);
        let shutdown = watch::Sender::new(false);
        let inbound = Arc::new(InboundCounters::default());
        let receiving = Arc::new(Receiving {
            max_frame_bytes: config.max_frame_bytes,
            handshake_timeout: config.io_timeout,
            accept_retry: config.backoff_base,
            inbox,
            counters: inbound.clone(),
            logger: logger.clone(),
        });
        tokio::spawn(inbound::accept_loop(listener, receiving, shutdown.subscribe(), alive.clone()));
        let transport = Transport {
            shared: Arc::new(Shared {
                node_id,
                local_addr,
                config,
                logger,
                peers: Mutex::new(BTreeMap::new()),
                inbound,
                shutdown,
                alive: Mutex::new(Some(alive)),
                done: tokio::sync::Mutex::new(done),
            }),
        };
        for (id, addr) in peers {
            transport.add_peer(id, addr).expect("nobody can shut down a transport before it is returned");
        }
        debug!(transport.shared.logger, "transport started"; "addr" => %local_addr);
        Ok((transport, Inbound { rx }))
    }

    pub fn node_id(&self) -> u64 {
        self.shared.node_id
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Enqueues `payload` for `to` without waiting. An `Err` means it was not
    /// queued; an `Ok` does not mean it will arrive.
    pub fn send(&self, to: u64, payload: Bytes) -> Result<(), SendError> {
        let max = self.shared.config.max_payload_bytes();
        if payload.len() > max {
            return Err(SendError::TooLarge { len: payload.len(), max });
        }
        let peers = self.shared.peers();
        let peer = peers.get(&to).ok_or(SendError::UnknownPeer(to))?;
        match peer.queue.try_send(payload) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                add(&peer.counters.dropped_queue_full, 1);
                Err(SendError::QueueFull(to))
            }
            // Peer tasks end only on shutdown while their entry exists.
            Err(mpsc::error::TrySendError::Closed(_)) => Err(ShutDown.into()),
        }
    }

    /// Links to a new peer, or replaces the link (and its queue and counters)
    /// to a known one, e.g. when its address changed. Skips `node_id` itself.
    pub fn add_peer(&self, id: u64, addr: SocketAddr) -> Result<(), ShutDown> {
        let shared = &self.shared;
        if id == shared.node_id {
            return Ok(());
        }
        // Held while spawning, so that `shutdown` waits for this task too.
        let alive = shared.alive.lock().unwrap_or_else(PoisonError::into_inner);
        let alive = alive.as_ref().ok_or(ShutDown)?;
        let (queue, rx) = mpsc::channel(shared.config.queue_capacity);
        let (stop, stopped) = oneshot::channel();
        let counters = Arc::new(PeerCounters::default());
        let config = &shared.config;
        let link = Link {
            from: shared.node_id,
            to: id,
            addr,
            queue: rx,
            counters: counters.clone(),
            faults: config.faults.clone(),
            max_frame_bytes: config.max_frame_bytes as usize,
            io_timeout: config.io_timeout,
            backoff: Backoff::new(config.backoff_base, config.backoff_max, link_seed(config.seed, shared.node_id, id)),
            logger: shared.logger.new(o!("peer" => id)),
        };
        tokio::spawn(outbound::run(link, stopped, shared.shutdown.subscribe(), alive.clone()));
        shared.peers().insert(id, Peer { queue, counters, _stop: stop });
        debug!(shared.logger, "peer added"; "peer" => id, "addr" => %addr);
        Ok(())
    }

    /// Ends the link to `id`, discarding what is queued for it. Whether it was a peer.
    pub fn remove_peer(&self, id: u64) -> bool {
        let removed = self.shared.peers().remove(&id).is_some();
        if removed {
            debug!(self.shared.logger, "peer removed"; "peer" => id);
        }
        removed
    }

    pub fn stats(&self) -> TransportStats {
        TransportStats {
            peers: self.shared.peers().iter().map(|(&id, peer)| (id, peer.counters.snapshot())).collect(),
            inbound: self.shared.inbound.snapshot(),
        }
    }

    /// Stops accepting, closes every connection and returns once every task
    /// has ended; `Inbound` then yields what was already received, then `None`.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        drop(self.shared.alive.lock().unwrap_or_else(PoisonError::into_inner).take());
        // Nobody sends on `done`: it reports closed when the last task ends.
        while self.shared.done.lock().await.recv().await.is_some() {}
        debug!(self.shared.logger, "transport shut down");
    }
}

impl Shared {
    /// Poisoning would mean a panic with the map in hand, and no code path
    /// can leave it inconsistent, so the map stays usable.
    fn peers(&self) -> MutexGuard<'_, BTreeMap<u64, Peer>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A distinct, reproducible jitter stream per directed link.
fn link_seed(seed: u64, from: u64, to: u64) -> u64 {
    seed ^ from.rotate_left(32) ^ to.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Inbound {
    /// The next payload and its sender; `None` once the transport is shut
    /// down and everything received has been taken.
    pub async fn recv(&mut self) -> Option<(u64, Bytes)> {
        self.rx.recv().await
    }

    /// The next payload if one is waiting.
    pub fn try_recv(&mut self) -> Option<(u64, Bytes)> {
        self.rx.try_recv().ok()
    }
}
