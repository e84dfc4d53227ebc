//! Decoding one request frame: header, then body, each checked before the crate reads it.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};

use super::bounded_decode::{decode_bounded, DecodeError};
use super::versions::{self, SupportedApi};

/// A request frame, decoded.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per request, moved once: boxing buys nothing
pub enum Request {
    /// A request of a supported API at a supported version.
    Supported { api: &'static SupportedApi, header: RequestHeader, body: RequestKind },
    /// ApiVersions at a version we do not speak: its body is not decoded (KIP-511).
    UnsupportedApiVersions { header: RequestHeader },
}

/// Why a frame is not a request we serve; each closes the connection, as in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("frame of {0} bytes is too short for a request header")]
    TruncatedHeader(usize),
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("bad {api_key:?} v{api_version} request header: {error}")]
    Header { api_key: ApiKey, api_version: i16, error: DecodeError },
    #[error("unsupported API {api_key:?} (v{api_version}, correlation id {correlation_id})")]
    UnsupportedApi { api_key: ApiKey, api_version: i16, correlation_id: i32 },
    #[error("unsupported version {api_version} of {api_key:?} (correlation id {correlation_id})")]
    UnsupportedVersion { api_key: ApiKey, api_version: i16, correlation_id: i32 },
    #[error("bad {api_key:?} v{api_version} request body (correlation id {correlation_id}): {error}")]
    Body { api_key: ApiKey, api_version: i16, correlation_id: i32, error: DecodeError },
}

/// Decodes a request from a frame's payload.
pub fn parse(mut frame: Bytes) -> Result<Request, RequestError> {
    // The crate peeks at key and version without a bounds check.
    let Some(&[k0, k1, v0, v1]) = frame.get(..4) else {
        return Err(RequestError::TruncatedHeader(frame.len()));
    };
    let raw_key = i16::from_be_bytes([k0, k1]);
    let api_version = i16::from_be_bytes([v0, v1]);
    let api_key = ApiKey::try_from(raw_key).map_err(|()| RequestError::UnknownApiKey(raw_key))?;
    let header: RequestHeader = decode_bounded(&mut frame, api_key.request_header_version(api_version))
        .map_err(|error| RequestError::Header { api_key, api_version, error })?;
    let correlation_id = header.correlation_id;
    let Some(api) = versions::supported(api_key) else {
        return Err(RequestError::UnsupportedApi { api_key, api_version, correlation_id });
    };
    if !api.accepts(api_version) {
        return if api_key == ApiKey::ApiVersions {
            Ok(Request::UnsupportedApiVersions { header })
        } else {
            Err(RequestError::UnsupportedVersion { api_key, api_version, correlation_id })
        };
    }
    let body = api.decode(&mut frame, api_version).map_err(|error| RequestError::Body {
        api_key,
        api_version,
        correlation_id,
        error,
    })?;
    // Bytes after the body, if any, are ignored.
    Ok(Request::Supported { api, header, body })
}
