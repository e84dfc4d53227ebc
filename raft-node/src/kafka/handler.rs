//! The seam between the wire layer and the broker's per-API logic.

use std::future::Future;

use kafka_protocol::messages::{RequestHeader, RequestKind, ResponseKind};

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
    fn handle(&self, header: &RequestHeader, request: RequestKind) -> impl Future<Output = Reply> + Send;
}
