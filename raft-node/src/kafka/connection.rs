//! One client connection: requests read and handled concurrently, responses written in order.
//!
//! Produce requests start in order: each once the connection's previous one has passed its
//! [`Turn`], that is, handed its batches on. An idempotent producer pipelines its batches, and
//! the partition must see them in the order sent: a batch overtaking the one before it would
//! be refused as out of sequence, which the client takes for a lost write.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use slog::{debug, error, info, Logger};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};

use super::frame::{FrameError, FrameReader};
use super::handler::{Handler, Reply, Turn};
use super::request::{self, Request, RequestError};
use super::response::{self, EncodeError};
use super::server::ServerConfig;
use super::versions::{self, SupportedApi};
use crate::watch;

/// Why a connection was closed early.
#[derive(Debug, thiserror::Error)]
enum CloseReason {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("the handler asked to close")]
    HandlerClose,
    #[error("the handler answered a {api_key:?} request with another API's response")]
    MismatchedResponse { api_key: ApiKey },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("the handler task failed: {0}")]
    HandlerFailed(#[from] JoinError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A response frame, nothing (acks=0), or the reason to close instead.
type Answer = Result<Option<Bytes>, CloseReason>;

/// How the reading side ended.
enum Stopped {
    /// The client sent its last request.
    EndOfStream,
    Shutdown,
}

pub(super) async fn serve<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: H,
    config: ServerConfig,
    logger: Logger,
    shutdown: watch::Receiver<bool>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut in_flight = VecDeque::new();
    let read = read_requests(&mut reader, &mut writer, &mut in_flight, &handler, &config, shutdown).await;
    let outcome = match read {
        Ok(Stopped::EndOfStream) => write_remaining(&mut writer, &mut in_flight).await,
        Ok(Stopped::Shutdown) => {
            tokio::time::timeout(config.shutdown_grace, write_remaining(&mut writer, &mut in_flight))
                .await
                .unwrap_or(Ok(()))
        }
        Err(reason) => Err(reason),
    };
    match outcome {
        Ok(()) => {
            // Best effort: the client may be gone already.
            let _ = writer.shutdown().await;
            debug!(logger, "connection closed"; "peer" => %peer);
        }
        Err(reason @ (CloseReason::Frame(_) | CloseReason::Request(_))) => {
            info!(logger, "closing connection on a bad request"; "peer" => %peer, "reason" => %reason);
        }
        Err(
            reason @ (CloseReason::MismatchedResponse { .. } | CloseReason::Encode(_) | CloseReason::HandlerFailed(_)),
        ) => {
            error!(logger, "closing connection on a broker fault"; "peer" => %peer, "reason" => %reason);
        }
        Err(reason @ (CloseReason::HandlerClose | CloseReason::Io(_))) => {
            debug!(logger, "connection closed"; "peer" => %peer, "reason" => %reason);
        }
    }
    // Handler tasks still running finish on their own; their answers are dropped.
}

/// Reads and starts requests, keeping at most `max_in_flight` unanswered, and writes each
/// answer once it and all before it are ready, until end of stream or shutdown.
async fn read_requests<R, W, H>(
    reader: &mut R,
    writer: &mut W,
    in_flight: &mut VecDeque<JoinHandle<Answer>>,
    handler: &H,
    config: &ServerConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Stopped, CloseReason>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    H: Handler,
{
    let mut frames = FrameReader::new(config.max_request_bytes);
    // Zero would never read a request.
    let bound = config.max_in_flight.max(1);
    let mut produce_turn = ProduceTurn::default();
    loop {
        while in_flight.len() < bound {
            let Some(frame) = frames.next_frame()? else { break };
            in_flight.push_back(start(frame, handler, &mut produce_turn)?);
        }
        let room = in_flight.len() < bound;
        tokio::select! {
            biased; // replayable in the simulation
            answer = next_answer(in_flight) => {
                in_flight.pop_front();
                write_answer(writer, answer).await?;
            }
            read = frames.read_from(reader), if room => {
                if read? == 0 {
                    return Ok(Stopped::EndOfStream);
                }
            }
            () = stop_signalled(&mut shutdown) => return Ok(Stopped::Shutdown),
        }
    }
}

async fn stop_signalled(shutdown: &mut watch::Receiver<bool>) {
    // An error means the server dropped the sender: it is gone, so stop as well.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Writes the answers still owed, in order.
async fn write_remaining<W: AsyncWrite + Unpin>(
    writer: &mut W,
    in_flight: &mut VecDeque<JoinHandle<Answer>>,
) -> Result<(), CloseReason> {
    while !in_flight.is_empty() {
        let answer = next_answer(in_flight).await;
        in_flight.pop_front();
        write_answer(writer, answer).await?;
    }
    Ok(())
}

/// The answer to the oldest request, once ready; never, if none is in flight. Cancel-safe.
async fn next_answer(in_flight: &mut VecDeque<JoinHandle<Answer>>) -> Result<Answer, JoinError> {
    match in_flight.front_mut() {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

async fn write_answer<W: AsyncWrite + Unpin>(
    writer: &mut W,
    answer: Result<Answer, JoinError>,
) -> Result<(), CloseReason> {
    if let Some(frame) = answer?? {
        writer.write_all(&frame).await?;
        // A no-op on a real socket; madsim's simulated TCP sends on flush.
        writer.flush().await?;
    }
    Ok(())
}

/// Where the connection's last Produce request is: resolved once it has passed its turn.
#[derive(Default)]
struct ProduceTurn(Option<oneshot::Receiver<()>>);

impl ProduceTurn {
    /// The wait for the previous Produce, and the new one's turn.
    fn take(&mut self) -> (Option<oneshot::Receiver<()>>, Turn) {
        let (turn, passed) = Turn::new();
        (self.0.replace(passed), turn)
    }
}

/// Decodes a request and starts answering it: ApiVersions here, the rest by the handler.
fn start<H: Handler>(
    frame: Bytes,
    handler: &H,
    produce_turn: &mut ProduceTurn,
) -> Result<JoinHandle<Answer>, CloseReason> {
    Ok(match request::parse(frame)? {
        Request::UnsupportedApiVersions { header }
        | Request::Supported { header, body: RequestKind::ApiVersions(_), .. } => {
            let (body, version) = versions::api_versions_response(header.request_api_version);
            let frame =
                response::encode(ApiKey::ApiVersions, version, header.correlation_id, &ResponseKind::ApiVersions(body));
            tokio::spawn(async move { Ok(Some(frame?)) })
        }
        Request::Supported { api, header, body } => {
            let handler = handler.clone();
            let (previous, turn) = match api.key {
                ApiKey::Produce => produce_turn.take(),
                _ => (None, Turn::unordered()),
            };
            tokio::spawn(async move {
                if let Some(previous) = previous {
                    // An error only means the previous one's turn was dropped: it is over.
                    let _ = previous.await;
                }
                let reply = handler.handle(&header, body, turn).await;
                encode_reply(api, &header, reply)
            })
        }
    })
}

fn encode_reply(api: &SupportedApi, header: &RequestHeader, reply: Reply) -> Answer {
    match reply {
        Reply::Response(body) if !api.is_response(&body) => Err(CloseReason::MismatchedResponse { api_key: api.key }),
        Reply::Response(body) => {
            Ok(Some(response::encode(api.key, header.request_api_version, header.correlation_id, &body)?))
        }
        Reply::NoResponse => Ok(None),
        Reply::Close => Err(CloseReason::HandlerClose),
    }
}
