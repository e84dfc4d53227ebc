//! The accept loop and graceful shutdown.

use std::future::Future;
use std::time::Duration;

use slog::{debug, info, warn, Logger};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::connection;
use super::frame::DEFAULT_MAX_FRAME_BYTES;
use super::handler::Handler;
use crate::watch;

/// After a failed accept (out of file descriptors, say), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest request frame accepted (Kafka's `socket.request.max.bytes`); a larger
    /// declared length closes the connection before anything is allocated for it.
    pub max_request_bytes: usize,
    /// Requests of one connection read and not yet answered; reading pauses at this bound.
    pub max_in_flight: usize,
    /// How long, after shutdown is signalled, requests in flight get to be answered.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_request_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_in_flight: 32,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves Kafka clients on `listener` until `shutdown` completes; then stops accepting, lets
/// the requests in flight be answered for up to `config.shutdown_grace`, and returns.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: H,
    config: ServerConfig,
    logger: Logger,
    shutdown: impl Future<Output = ()>,
) {
    // Ours, not tokio's watch: connections stop in a replayable order (see `crate::watch`).
    let stop = watch::Sender::new(false);
    let stopped = stop.subscribe();
    // Each connection holds a sender; `recv` returns `None` once all of them are gone.
    let (alive, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased; // replayable in the simulation
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    debug!(logger, "connection accepted"; "peer" => %peer);
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!(logger, "cannot set TCP_NODELAY"; "peer" => %peer, "error" => %e);
                    }
                    let (handler, config, logger, stopped, alive) =
                        (handler.clone(), config.clone(), logger.clone(), stopped.clone(), alive.clone());
                    tokio::spawn(async move {
                        connection::serve(stream, peer, handler, config, logger, stopped).await;
                        drop(alive);
                    });
                }
                Err(e) => {
                    warn!(logger, "accept failed"; "error" => %e);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    info!(logger, "Kafka listener closed; finishing the requests in flight");
    stop.send_replace(true);
    drop(alive);
    // Connections bound their own drain by the grace period; this bounds one stuck writing.
    let _ = tokio::time::timeout(config.shutdown_grace, all_closed.recv()).await;
}
