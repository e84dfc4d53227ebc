//! A real `raft_node::kafka::serve` on a loopback socket, fed arbitrary bytes.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsResponse, DeleteTopicsResponse,
    DescribeConfigsResponse, FetchResponse, ListOffsetsResponse, MetadataResponse, ProduceResponse, RequestHeader,
    RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use raft_node::kafka::{serve, Handler, Reply, ServerConfig, Turn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Answers every request with the default response of its API (acks=0 Produce with none).
#[derive(Clone)]
struct Defaults;

impl Handler for Defaults {
    async fn handle(&self, _header: &RequestHeader, request: RequestKind, _turn: Turn) -> Reply {
        Reply::Response(match request {
            RequestKind::Produce(p) if p.acks == 0 => return Reply::NoResponse,
            RequestKind::Produce(_) => ResponseKind::Produce(ProduceResponse::default()),
            RequestKind::Fetch(_) => ResponseKind::Fetch(FetchResponse::default()),
            RequestKind::ListOffsets(_) => ResponseKind::ListOffsets(ListOffsetsResponse::default()),
            RequestKind::Metadata(_) => ResponseKind::Metadata(MetadataResponse::default()),
            RequestKind::CreateTopics(_) => ResponseKind::CreateTopics(CreateTopicsResponse::default()),
            RequestKind::DeleteTopics(_) => ResponseKind::DeleteTopics(DeleteTopicsResponse::default()),
            RequestKind::DescribeConfigs(_) => ResponseKind::DescribeConfigs(DescribeConfigsResponse::default()),
            _ => return Reply::Close,
        })
    }
}

/// Bytes of the frame cap the server runs with: small, so the fuzzer reaches it.
const MAX_REQUEST: usize = 4096;
/// Far beyond what a loopback round trip takes; reaching it means the server is stuck.
const PATIENCE: Duration = Duration::from_secs(10);

/// One server for the whole process, on its own runtime.
fn server() -> &'static (Runtime, SocketAddr) {
    static SERVER: OnceLock<(Runtime, SocketAddr)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("a loopback listener");
        let addr = listener.local_addr().expect("its address");
        let config =
            ServerConfig { max_request_bytes: MAX_REQUEST, max_in_flight: 4, shutdown_grace: Duration::from_secs(1) };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        runtime.spawn(serve(listener, Defaults, config, logger, std::future::pending()));
        (runtime, addr)
    })
}

/// Property: a client that sends arbitrary bytes and then closes its side sees the server
/// finish the connection (answer what it answers, then close) rather than hang, and the
/// server survives: a valid ApiVersions request on a new connection still gets its answer.
pub fn garbage_then_api_versions(input: &[u8]) {
    let (runtime, addr) = server();
    runtime.block_on(async {
        tokio::time::timeout(PATIENCE, send_garbage(*addr, input))
            .await
            .expect("the server neither answered nor closed a connection whose client finished sending");
        tokio::time::timeout(PATIENCE, api_versions(*addr))
            .await
            .expect("no ApiVersions answer after garbage on another connection");
    });
}

async fn send_garbage(addr: SocketAddr, input: &[u8]) {
    let stream = TcpStream::connect(addr).await.expect("the server accepts");
    let (mut reader, mut writer) = stream.into_split();
    let write = async {
        // The server may close first (a bad frame), and then writes fail: that is its right.
        let _ = writer.write_all(input).await;
        let _ = writer.shutdown().await;
    };
    let read = async {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink).await;
    };
    tokio::join!(write, read);
}

async fn api_versions(addr: SocketAddr) {
    const VERSION: i16 = 3;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(77)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("keel-fuzz"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let mut body = BytesMut::new();
    header.encode(&mut body, ApiKey::ApiVersions.request_header_version(VERSION)).expect("encodes");
    request.encode(&mut body, VERSION).expect("encodes");
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);

    let mut stream = TcpStream::connect(addr).await.expect("the server still accepts");
    stream.write_all(&frame).await.expect("the request is sent");
    let len = stream.read_i32().await.expect("a response length");
    let mut response = vec![0; usize::try_from(len).expect("a positive length")];
    stream.read_exact(&mut response).await.expect("the response");
    let mut buf = &response[..];
    let header = ResponseHeader::decode(&mut buf, ApiKey::ApiVersions.response_header_version(VERSION))
        .expect("a response header");
    assert_eq!(header.correlation_id, 77);
    let answer = ApiVersionsResponse::decode(&mut buf, VERSION).expect("an ApiVersions response");
    assert_eq!(answer.error_code, 0);
    assert!(answer.api_keys.iter().any(|k| k.api_key == ApiKey::Produce as i16));
    assert_eq!(buf.remaining(), 0);
}
