//! Encoding one response frame.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use super::frame::{self, FrameError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
    Body { api_key: ApiKey, api_version: i16, reason: String },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// The frame answering request `correlation_id` of `api_key` with `body` at `api_version`.
pub fn encode(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let mut buf = frame::start();
    let failed =
        |error: &dyn std::fmt::Display| EncodeError::Body { api_key, api_version, reason: format!("{error:#}") };
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api_key.response_header_version(api_version))
        .map_err(|e| failed(&e))?;
    body.encode(&mut buf, api_version).map_err(|e| failed(&e))?;
    Ok(frame::finish(buf)?)
}
