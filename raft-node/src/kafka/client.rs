//! The client side of the wire protocol: one connection to a Kafka broker.

use bytes::Bytes;
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, ToSocketAddrs};

use super::bounded_decode::{decode_bounded, DecodeError};
use super::frame::{self, FrameError, FrameReader, DEFAULT_MAX_FRAME_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker closed the connection")]
    Closed,
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("cannot encode the request: {0}")]
    Encode(String),
    #[error("bad response: {0}")]
    Decode(#[from] DecodeError),
    #[error("response to correlation id {got} where {expected} was due")]
    OutOfOrder { expected: i32, got: i32 },
}

/// A connection to a broker. Requests may be pipelined with [`Connection::write_request`] and
/// [`Connection::read_response`]; the broker answers in request order.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    frames: FrameReader,
    client_id: Option<StrBytes>,
    next_correlation_id: i32,
}

impl Connection {
    pub async fn connect(addr: impl ToSocketAddrs, client_id: &str) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            frames: FrameReader::new(DEFAULT_MAX_FRAME_BYTES),
            client_id: Some(StrBytes::from_string(client_id.to_owned())),
            next_correlation_id: 0,
        })
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn send<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response, ClientError> {
        let expected = self.write_request(version, request).await?;
        let (got, response) = self.read_response::<R>(version).await?;
        if got != expected {
            return Err(ClientError::OutOfOrder { expected, got });
        }
        Ok(response)
    }

    /// Sends `request` at `version` without waiting; returns its correlation id.
    pub async fn write_request<R: Request>(&mut self, version: i16, request: &R) -> Result<i32, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(self.client_id.clone());
        let mut buf = frame::start();
        let failed = |e: &dyn std::fmt::Display| ClientError::Encode(format!("{e:#}"));
        header.encode(&mut buf, R::header_version(version)).map_err(|e| failed(&e))?;
        request.encode(&mut buf, version).map_err(|e| failed(&e))?;
        self.stream.write_all(&frame::finish(buf)?).await?;
        // A no-op on a real socket; madsim's simulated TCP sends on flush.
        self.stream.flush().await?;
        Ok(correlation_id)
    }

    /// Reads the next response, decoding it as `R`'s at `version` (the caller knows which
    /// request it answers: responses come in request order). Returns its correlation id.
    pub async fn read_response<R: Request>(&mut self, version: i16) -> Result<(i32, R::Response), ClientError> {
        let mut frame = self.read_frame().await?;
        let header: ResponseHeader = decode_bounded(&mut frame, R::Response::header_version(version))?;
        let body = decode_bounded(&mut frame, version)?;
        Ok((header.correlation_id, body))
    }

    async fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        loop {
            if let Some(frame) = self.frames.next_frame()? {
                return Ok(frame);
            }
            if self.frames.read_from(&mut self.stream).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
}
