//! The listening side: one task accepts, one task per connection reads frames
//! and hands their payloads to the node.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use slog::{debug, warn, Logger};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

use super::frame::{self, FrameError, FrameHeader, HANDSHAKE_LEN, HEADER_LEN};
use super::stats::{add, InboundCounters};
use crate::watch;

/// Small frames are read a buffer at a time, large bodies straight through.
const READ_BUFFER: usize = 64 << 10;

/// What every connection reader shares.
pub(super) struct Receiving {
    pub max_frame_bytes: u32,
    pub handshake_timeout: Duration,
    /// Pause after a failed accept (e.g. out of file descriptors).
    pub accept_retry: Duration,
    pub inbox: mpsc::Sender<(u64, Bytes)>,
    pub counters: Arc<InboundCounters>,
    pub logger: Logger,
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("protocol violation: {0}")]
    Protocol(#[from] FrameError),
    #[error("the node no longer receives")]
    InboxClosed,
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    receiving: Arc<Receiving>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|down| *down) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => {
                add(&receiving.counters.accepted, 1);
                tokio::spawn(serve(stream, addr, receiving.clone(), shutdown.clone(), alive.clone()));
            }
            Err(error) => {
                warn!(receiving.logger, "accept failed"; "error" => %error);
                sleep(receiving.accept_retry).await;
            }
        }
    }
}

async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    receiving: Arc<Receiving>,
    mut shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let outcome = tokio::select! {
        biased;
        _ = shutdown.wait_for(|down| *down) => Ok(()),
        outcome = receiving.read(BufReader::with_capacity(READ_BUFFER, stream)) => outcome,
    };
    let logger = &receiving.logger;
    match outcome {
        Ok(()) => debug!(logger, "inbound connection closed"; "addr" => %addr),
        Err(error @ (ConnectionError::Protocol(_) | ConnectionError::HandshakeTimeout(_))) => {
            // Counted before the stream drops, so whoever sees it dropped sees the count.
            add(&receiving.counters.rejected, 1);
            warn!(logger, "dropping inbound connection"; "addr" => %addr, "error" => %error);
        }
        Err(error) => debug!(logger, "inbound connection ended"; "addr" => %addr, "error" => %error),
    }
}

impl Receiving {
    /// Reads frames until the peer closes (`Ok`) or misbehaves.
    async fn read(&self, mut reader: impl AsyncRead + Unpin) -> Result<(), ConnectionError> {
        let mut handshake = [0; HANDSHAKE_LEN];
        match timeout(self.handshake_timeout, reader.read_exact(&mut handshake)).await {
            Ok(read) => read?,
            Err(_) => return Err(ConnectionError::HandshakeTimeout(self.handshake_timeout)),
        };
        let from = frame::decode_handshake(handshake)?;
        debug!(self.logger, "inbound connection"; "from" => from);
        loop {
            let mut header = [0; HEADER_LEN];
            match reader.read_exact(&mut header).await {
                Ok(_) => {}
                // Between frames or within one: either way the sender is gone.
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error.into()),
            }
            let header = FrameHeader::parse(header, self.max_frame_bytes)?;
            let mut body = BytesMut::zeroed(header.body_len as usize);
            reader.read_exact(&mut body).await?;
            let payloads = frame::decode_body(header, body.freeze())?;
            add(&self.counters.frames, 1);
            add(&self.counters.payloads, payloads.len() as u64);
            for payload in payloads {
                self.inbox.send((from, payload)).await.map_err(|_| ConnectionError::InboxClosed)?;
            }
        }
    }
}
