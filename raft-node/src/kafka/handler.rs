//! The seam between the wire layer and the broker's per-API logic.

use std::future::Future;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};
use tokio::sync::oneshot;

/// What the broker makes of one request.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per request, moved once: boxing buys nothing
pub enum Reply {
    /// The response body, of the request's API; the server encodes it at the request's version.
    Response(ResponseKind),
    /// Nothing is sent back (Produce with acks=0).
    NoResponse,
    /// Close the connection, dropping the responses still owed on it (as Kafka does).
    Close,
}

/// Answers the requests the server decoded: every supported API but ApiVersions, which the
/// server answers itself. Requests of one connection are handled concurrently; the server
/// writes the replies in request order.
pub trait Handler: Clone + Send + Sync + 'static {
    /// `turn` orders a connection's Produce requests: see [`Turn`].
    fn handle(&self, header: &RequestHeader, request: RequestKind, turn: Turn) -> impl Future<Output = Reply> + Send;
}

/// A Produce request's place in its connection's order of writes.
///
/// The server starts a connection's Produce requests one after another, each once the one
/// before has passed its turn. A handler passes it (or drops it) once the request's batches
/// are handed on in order, so an idempotent producer's pipelined batches reach each partition
/// in the order sent, while waiting for their acks (a raft commit) overlaps. Kafka handles a
/// connection's requests strictly one at a time; this keeps its order without serialising
/// the round trips. Any other request's turn orders nothing.
#[derive(Debug)]
pub struct Turn {
    /// Dropped to pass the turn: the next Produce waits on its receiver.
    _next: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// The next Produce request of the connection starts.
    pub fn pass(self) {}

    /// A turn no request waits for.
    pub fn unordered() -> Turn {
        Turn { _next: None }
    }

    /// This request's turn, and what resolves when it is passed (sender dropped).
    pub(super) fn new() -> (Turn, oneshot::Receiver<()>) {
        let (passed, waiting) = oneshot::channel();
        (Turn { _next: Some(passed) }, waiting)
    }
}
