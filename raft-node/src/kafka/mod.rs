//! The Kafka wire protocol: framing, request decoding, version negotiation and ordered,
//! pipelined responses, up to the [`Handler`] that holds each API's logic; and a small client.
//!
//! Untrusted bytes reach kafka-protocol only through [`decode_bounded`], which keeps forged
//! array counts from aborting the process.

mod bounded_decode;
pub mod client;
pub mod config_codes;
mod connection;
pub mod frame;
mod handler;
pub mod request;
mod response;
mod server;
pub mod versions;

pub use bounded_decode::{decode_bounded, DecodeError};
pub use handler::{Handler, Reply, Turn};
pub use server::{serve, ServerConfig};
