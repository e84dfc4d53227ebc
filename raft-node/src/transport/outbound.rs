//! One task per peer owns the connection to it: it connects lazily, reconnects
//! with backoff, applies the fault hook, and writes everything ready as one
//! frame per round.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slog::{debug, info, Logger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::backoff::Backoff;
use super::faults::{LinkDecision, LinkFaults};
use super::frame::{self, BODY_OVERHEAD, ENTRY_OVERHEAD};
use super::stats::{add, PeerCounters};
use crate::watch;

pub(super) struct Link {
    pub from: u64,
    pub to: u64,
    pub addr: SocketAddr,
    pub queue: mpsc::Receiver<Bytes>,
    pub counters: Arc<PeerCounters>,
    pub faults: Option<Arc<dyn LinkFaults>>,
    pub max_frame_bytes: usize,
    pub io_timeout: Duration,
    pub backoff: Backoff,
    pub logger: Logger,
}

/// Runs the link until the peer is removed (`stop`'s sender dropped) or the
/// transport shuts down. `_alive` tells `Transport::shutdown` when it is over.
pub(super) async fn run(
    link: Link,
    stop: oneshot::Receiver<()>,
    mut shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let logger = link.logger.clone();
    let mut state = LinkState { link, ready: VecDeque::new(), delayed: BTreeMap::new(), delays: 0, conn: None };
    tokio::select! {
        biased;
        _ = stop => debug!(logger, "peer removed"),
        _ = shutdown.wait_for(|down| *down) => debug!(logger, "transport shut down"),
        _ = state.run() => debug!(logger, "queue closed"),
    }
}

struct LinkState {
    link: Link,
    /// Past the fault hook, in delivery order, waiting for the next frame.
    ready: VecDeque<Bytes>,
    /// Held back by the fault hook until their instant; the sequence number
    /// keeps payloads due at the same instant in the order they were held.
    delayed: BTreeMap<(Instant, u64), Bytes>,
    delays: u64,
    conn: Option<TcpStream>,
}

enum Wake {
    Queued(Bytes),
    QueueClosed,
    DelayDue,
    ConnectionLost(io::Result<usize>),
}

impl LinkState {
    async fn run(&mut self) {
        let mut frame = BytesMut::new();
        loop {
            if self.ready.is_empty() {
                match self.wait().await {
                    Wake::Queued(payload) => self.admit(payload),
                    Wake::QueueClosed => return,
                    Wake::DelayDue => {}
                    Wake::ConnectionLost(read) => {
                        // Receivers never write: any read outcome means the
                        // connection is gone (or the peer is not one of us).
                        info!(self.link.logger, "connection lost"; "read" => ?read);
                        self.conn = None;
                    }
                }
                self.promote_due();
                if self.ready.is_empty() {
                    continue;
                }
            }
            if self.conn.is_none() {
                match connect(self.link.addr, self.link.from, self.link.io_timeout).await {
                    Ok(stream) => {
                        self.link.backoff.succeeded();
                        add(&self.link.counters.connects, 1);
                        debug!(self.link.logger, "connected"; "addr" => %self.link.addr);
                        self.conn = Some(stream);
                    }
                    Err(error) => {
                        // What is ready now is stale by the time we can retry;
                        // raft resends what still matters.
                        add(&self.link.counters.dropped_io, self.ready.len() as u64);
                        self.ready.clear();
                        add(&self.link.counters.connect_failures, 1);
                        let delay = self.link.backoff.failed();
                        debug!(self.link.logger, "connect failed"; "addr" => %self.link.addr, "error" => %error, "retry_in" => ?delay);
                        sleep(delay).await;
                        continue;
                    }
                }
            }
            // Everything queued meanwhile joins this round's frame.
            while let Ok(payload) = self.link.queue.try_recv() {
                self.admit(payload);
            }
            self.promote_due();
            self.write_round(&mut frame).await;
        }
    }

    async fn wait(&mut self) -> Wake {
        let due = self.delayed.keys().next().map(|&(at, _)| at);
        tokio::select! {
            biased;
            payload = self.link.queue.recv() => payload.map_or(Wake::QueueClosed, Wake::Queued),
            _ = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => Wake::DelayDue,
            read = closed(&mut self.conn) => Wake::ConnectionLost(read),
        }
    }

    fn admit(&mut self, payload: Bytes) {
        let decision = match &self.link.faults {
            Some(faults) => faults.decide(self.link.from, self.link.to),
            None => LinkDecision::Deliver,
        };
        match decision {
            LinkDecision::Deliver => self.ready.push_back(payload),
            LinkDecision::Drop => add(&self.link.counters.dropped_by_faults, 1),
            LinkDecision::Duplicate => {
                self.ready.push_back(payload.clone());
                self.ready.push_back(payload);
            }
            LinkDecision::Delay(delay) => {
                self.delayed.insert((Instant::now() + delay, self.delays), payload);
                self.delays += 1;
            }
        }
    }

    fn promote_due(&mut self) {
        let now = Instant::now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            self.ready.push_back(entry.remove());
        }
    }

    /// Writes the longest prefix of `ready` that fits one frame.
    async fn write_round(&mut self, frame: &mut BytesMut) {
        let mut body = BODY_OVERHEAD;
        let mut taken = 0;
        for payload in &self.ready {
            let grown = body + ENTRY_OVERHEAD + payload.len();
            if grown > self.link.max_frame_bytes {
                break;
            }
            body = grown;
            taken += 1;
        }
        // `send` refuses payloads that do not fit a frame on their own.
        assert!(taken > 0, "a ready payload exceeds the frame cap");
        frame.clear();
        frame::encode_frame(&self.ready.make_contiguous()[..taken], frame);
        self.ready.drain(..taken);

        let stream = self.conn.as_mut().expect("write_round runs connected");
        let write = async {
            stream.write_all(frame).await?;
            // madsim's TCP sends only on flush; real TCP's flush is a no-op.
            stream.flush().await
        };
        match timeout(self.link.io_timeout, write).await.unwrap_or_else(|_| Err(timed_out("write"))) {
            Ok(()) => {
                add(&self.link.counters.sent, taken as u64);
                add(&self.link.counters.frames, 1);
            }
            Err(error) => {
                // A frame cut short is detected by the receiver, which drops
                // the connection; the next round reconnects.
                info!(self.link.logger, "write failed"; "error" => %error, "payloads" => taken);
                add(&self.link.counters.dropped_io, taken as u64);
                self.conn = None;
            }
        }
    }
}

/// Dials and introduces us. A free function: madsim's `TcpStream` is not
/// `Sync`, so a `&LinkState` must not live across these awaits.
async fn connect(addr: SocketAddr, from: u64, io_timeout: Duration) -> io::Result<TcpStream> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&frame::encode_handshake(from)).await?;
        stream.flush().await?;
        Ok(stream)
    };
    timeout(io_timeout, attempt).await.unwrap_or_else(|_| Err(timed_out("connect")))
}

/// Completes when the connection yields anything at all; never without one.
async fn closed(conn: &mut Option<TcpStream>) -> io::Result<usize> {
    match conn {
        Some(stream) => stream.read(&mut [0; 1]).await,
        None => std::future::pending().await,
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}
