//! The Kafka wire server over real sockets on 127.0.0.1, with scripted handlers.
//!
//! Ordering is forced with gates and start/finish events, never with sleeps: a test that waits
//! for something that does not happen hangs rather than passes.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DeleteTopicsRequest, MetadataRequest, MetadataResponse,
    ProduceRequest, RequestHeader, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};
use raft_node::kafka::client::{ClientError, Connection};
use raft_node::kafka::versions::SUPPORTED;
use raft_node::kafka::{serve, Handler, Reply, ServerConfig, Turn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

type Script = dyn Fn(RequestHeader, RequestKind, Turn) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync;

#[derive(Clone)]
struct ScriptedHandler(Arc<Script>);

impl Handler for ScriptedHandler {
    fn handle(&self, header: &RequestHeader, request: RequestKind, turn: Turn) -> impl Future<Output = Reply> + Send {
        (self.0)(header.clone(), request, turn)
    }
}

/// A handler that passes every Produce request's turn as it starts.
fn scripted<F, Fut>(f: F) -> ScriptedHandler
where
    F: Fn(RequestHeader, RequestKind) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    scripted_in_turn(move |header, request, turn| {
        turn.pass();
        f(header, request)
    })
}

fn scripted_in_turn<F, Fut>(f: F) -> ScriptedHandler
where
    F: Fn(RequestHeader, RequestKind, Turn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    ScriptedHandler(Arc::new(move |header, request, turn| Box::pin(f(header, request, turn))))
}

/// Answers Metadata with the first requested topic's name as cluster id, so a response shows
/// which request it answers; Produce with acks=0 gets no response; DeleteTopics closes.
fn echo_handler() -> ScriptedHandler {
    scripted(|_, request| async move {
        match request {
            RequestKind::Metadata(request) => Reply::Response(ResponseKind::Metadata(echo(&request))),
            RequestKind::Produce(request) if request.acks == 0 => Reply::NoResponse,
            _ => Reply::Close,
        }
    })
}

fn echo(request: &MetadataRequest) -> MetadataResponse {
    let first = request.topics.iter().flatten().find_map(|t| t.name.clone());
    MetadataResponse::default().with_cluster_id(first.map(|name| name.0))
}

fn metadata_for(topic: &str) -> MetadataRequest {
    let name = TopicName(StrBytes::from_string(topic.to_owned()));
    MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name))]))
}

struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(handler: ScriptedHandler, config: ServerConfig, logger: slog::Logger) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, handler, config, logger, async {
        let _ = stopped.await;
    }));
    Server { addr, stop, task }
}

fn discard() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

async fn connect(addr: SocketAddr) -> Connection {
    Connection::connect(addr, "keel-test").await.unwrap()
}

fn assert_lists_supported(response: &ApiVersionsResponse) {
    let listed: Vec<_> = response.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
    let expected: Vec<_> = SUPPORTED.iter().map(|api| (api.key as i16, api.advertised_min, api.max)).collect();
    assert_eq!(listed, expected);
}

async fn assert_api_versions_works(conn: &mut Connection) {
    let response = conn.send(3, &ApiVersionsRequest::default()).await.unwrap();
    assert_eq!(response.error_code, 0);
}

/// A request frame built by hand: header at the version the key and version call for, then `body`.
fn raw_frame(api_key: i16, api_version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw")));
    let header_version = ApiKey::try_from(api_key).map_or(1, |key| key.request_header_version(api_version));
    let mut payload = BytesMut::new();
    header.encode(&mut payload, header_version).unwrap();
    payload.put_slice(body);
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// Sends `bytes` on a fresh connection and returns what came back before the server closed it.
async fn closes_after(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut received = Vec::new();
    // A reset is a close too (the server may close with our bytes unread).
    match stream.read_to_end(&mut received).await {
        Ok(_) => received,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => received,
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn api_versions_round_trip_at_v0_and_v3() {
    let server = start(echo_handler(), ServerConfig::default(), discard()).await;
    let mut conn = connect(server.addr).await;
    let v0 = conn.send(0, &ApiVersionsRequest::default()).await.unwrap();
    assert_eq!(v0.error_code, 0);
    assert_lists_supported(&v0);
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("keel-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    let v3 = conn.send(3, &request).await.unwrap();
    assert_eq!(v3.error_code, 0);
    assert_lists_supported(&v3);
}

#[tokio::test]
async fn unsupported_api_versions_version_gets_error_35_in_v0_with_the_list() {
    let server = start(echo_handler(), ServerConfig::default(), discard()).await;
    let mut conn = connect(server.addr).await;
    // v4 exists in the protocol but not here; the body is not even looked at.
    let id = conn.write_request(4, &ApiVersionsRequest::default()).await.unwrap();
    let (got, response) = conn.read_response::<ApiVersionsRequest>(0).await.unwrap();
    assert_eq!((got, response.error_code), (id, 35));
    assert_lists_supported(&response);

    // A version from the future, with a body we cannot know.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(&raw_frame(ApiKey::ApiVersions as i16, 100, 77, &[1, 2, 3])).await.unwrap();
    let len = stream.read_i32().await.unwrap();
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).await.unwrap();
    let mut payload = bytes::Bytes::from(payload);
    let header: kafka_protocol::messages::ResponseHeader =
        raft_node::kafka::decode_bounded(&mut payload, ApiVersionsResponse::header_version(0)).unwrap();
    let response: ApiVersionsResponse = raft_node::kafka::decode_bounded(&mut payload, 0).unwrap();
    assert_eq!((header.correlation_id, response.error_code), (77, 35));
    assert_lists_supported(&response);
    // The client can go on at a version we speak.
    let mut conn = connect(server.addr).await;
    assert_api_versions_works(&mut conn).await;
}

/// Per-topic gates: a handler for topic `t` waits until the test opens gate `t`.
#[derive(Default)]
struct Gates(Mutex<HashMap<String, oneshot::Receiver<()>>>);

impl Gates {
    fn close(&self, topic: &str) -> oneshot::Sender<()> {
        let (open, wait) = oneshot::channel();
        self.0.lock().unwrap().insert(topic.to_owned(), wait);
        open
    }

    fn take(&self, topic: &str) -> oneshot::Receiver<()> {
        self.0.lock().unwrap().remove(topic).expect("a gate for every topic")
    }
}

enum Event {
    Started(String),
    Finished(String),
}

/// Metadata requests wait at their topic's gate and report when they start and finish.
fn gated_handler(
    gates: Arc<Gates>,
    events: mpsc::UnboundedSender<Event>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
) -> ScriptedHandler {
    scripted(move |_, request| {
        let (gates, events, running, most) = (gates.clone(), events.clone(), running.clone(), most.clone());
        async move {
            let RequestKind::Metadata(request) = request else { return Reply::Close };
            let response = echo(&request);
            let topic = response.cluster_id.as_ref().expect("a topic").to_string();
            let gate = gates.take(&topic);
            most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            let _ = events.send(Event::Started(topic.clone()));
            gate.await.unwrap();
            running.fetch_sub(1, Ordering::SeqCst);
            let _ = events.send(Event::Finished(topic));
            Reply::Response(ResponseKind::Metadata(response))
        }
    })
}

#[tokio::test]
async fn pipelined_responses_keep_request_order_when_handlers_finish_out_of_order() {
    const N: usize = 8;
    let gates = Arc::new(Gates::default());
    let (events, mut event) = mpsc::unbounded_channel();
    let (running, most) = (Arc::default(), Arc::default());
    let server = start(gated_handler(gates.clone(), events, running, most), ServerConfig::default(), discard()).await;
    let mut conn = connect(server.addr).await;
    let topics: Vec<String> = (0..N).map(|i| format!("topic-{i}")).collect();
    let mut opens: Vec<_> = topics.iter().map(|t| gates.close(t)).collect();
    let mut ids = Vec::new();
    for topic in &topics {
        ids.push(conn.write_request(12, &metadata_for(topic)).await.unwrap());
    }
    // All handlers run at once: the first, blocked, did not stop the server reading the rest.
    let mut started = BTreeSet::new();
    while started.len() < N {
        match event.recv().await.unwrap() {
            Event::Started(topic) => assert!(started.insert(topic)),
            Event::Finished(topic) => panic!("{topic} finished with its gate closed"),
        }
    }
    // Finish them last to first, each before the next is let go.
    for topic in topics.iter().rev() {
        opens.pop().unwrap().send(()).unwrap();
        match event.recv().await.unwrap() {
            Event::Finished(finished) => assert_eq!(&finished, topic),
            Event::Started(topic) => panic!("{topic} started twice"),
        }
    }
    for (topic, id) in topics.iter().zip(ids) {
        let (got, response) = conn.read_response::<MetadataRequest>(12).await.unwrap();
        assert_eq!(got, id);
        assert_eq!(response.cluster_id.as_deref(), Some(topic.as_str()));
    }
}

/// A connection's Produce requests start one after another, in the order sent, each once the
/// one before has passed its turn (handed its batches on: an idempotent producer's pipelined
/// batches must reach the partition in sequence). Their answers overlap, and other requests
/// run alongside them.
#[tokio::test]
async fn pipelined_produce_requests_start_in_order_and_wait_for_acks_together() {
    const N: i32 = 4;
    let gates = Arc::new(Gates::default());
    let (events, mut event) = mpsc::unbounded_channel();
    // Produce requests are named by their timeout: gate "pass N" holds the turn, "answer N" the reply.
    let handler = {
        let gates = gates.clone();
        scripted_in_turn(move |_, request, turn| {
            let (gates, events) = (gates.clone(), events.clone());
            async move {
                let RequestKind::Produce(request) = request else {
                    let _ = events.send("other".to_string());
                    return Reply::Response(ResponseKind::Metadata(MetadataResponse::default()));
                };
                let name = request.timeout_ms;
                let (pass, answer) = (gates.take(&format!("pass {name}")), gates.take(&format!("answer {name}")));
                let _ = events.send(format!("start {name}"));
                pass.await.unwrap();
                turn.pass();
                answer.await.unwrap();
                let _ = events.send(format!("answer {name}"));
                Reply::Response(ResponseKind::Produce(Default::default()))
            }
        })
    };
    let server = start(handler, ServerConfig::default(), discard()).await;
    let mut conn = connect(server.addr).await;
    let passes: Vec<_> = (0..N).map(|i| gates.close(&format!("pass {i}"))).collect();
    let answers: Vec<_> = (0..N).map(|i| gates.close(&format!("answer {i}"))).collect();
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(conn.write_request(9, &ProduceRequest::default().with_acks(-1).with_timeout_ms(i)).await.unwrap());
    }
    conn.write_request(12, &metadata_for("m")).await.unwrap();

    // The first Produce and the request behind all of them run; no other Produce does.
    let first = BTreeSet::from([event.recv().await.unwrap(), event.recv().await.unwrap()]);
    assert_eq!(first, BTreeSet::from(["start 0".to_string(), "other".to_string()]));
    // Each Produce starts once the one before passes its turn, none of them answered yet.
    for (i, pass) in (0..N).zip(passes) {
        pass.send(()).unwrap();
        if i + 1 < N {
            assert_eq!(event.recv().await.unwrap(), format!("start {}", i + 1));
        }
    }
    // Answered last to first; the replies still go out in request order.
    for (i, answer) in (0..N).zip(answers).rev() {
        answer.send(()).unwrap();
        assert_eq!(event.recv().await.unwrap(), format!("answer {i}"));
    }
    for id in ids {
        assert_eq!(conn.read_response::<ProduceRequest>(9).await.unwrap().0, id);
    }
    conn.read_response::<MetadataRequest>(12).await.unwrap();
}

#[tokio::test]
async fn requests_in_flight_per_connection_are_bounded() {
    const BOUND: usize = 2;
    const N: usize = 6;
    let gates = Arc::new(Gates::default());
    let (events, mut event) = mpsc::unbounded_channel();
    let (running, most) = (Arc::default(), Arc::new(AtomicUsize::new(0)));
    let config = ServerConfig { max_in_flight: BOUND, ..ServerConfig::default() };
    let server = start(gated_handler(gates.clone(), events, running, most.clone()), config, discard()).await;
    let mut conn = connect(server.addr).await;
    let topics: Vec<String> = (0..N).map(|i| format!("topic-{i}")).collect();
    let opens: Vec<_> = topics.iter().map(|t| gates.close(t)).collect();
    let mut ids = Vec::new();
    for topic in &topics {
        ids.push(conn.write_request(12, &metadata_for(topic)).await.unwrap());
    }
    // Unbounded, all six would start at once and `most` would reach six.
    let mut started = BTreeSet::new();
    for ((topic, open), id) in topics.iter().zip(opens).zip(ids) {
        while !started.contains(topic) {
            if let Event::Started(t) = event.recv().await.unwrap() {
                started.insert(t);
            }
        }
        open.send(()).unwrap();
        let (got, response) = conn.read_response::<MetadataRequest>(12).await.unwrap();
        assert_eq!((got, response.cluster_id.as_deref()), (id, Some(topic.as_str())));
    }
    assert!(most.load(Ordering::SeqCst) <= BOUND, "{} handlers ran at once", most.load(Ordering::SeqCst));
}

#[tokio::test]
async fn bad_frames_close_their_connection_only() {
    const MAX: usize = 1 << 20;
    let config = ServerConfig { max_request_bytes: MAX, ..ServerConfig::default() };
    let server = start(echo_handler(), config, discard()).await;
    let mut bystander = connect(server.addr).await;
    assert_api_versions_works(&mut bystander).await;

    let forged_compact_count = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("oversized length", ((MAX + 1) as i32).to_be_bytes().to_vec()),
        ("negative length", (-1i32).to_be_bytes().to_vec()),
        ("truncated header", vec![0, 0, 0, 3, 0, 18, 0]),
        ("header cut in its client id", {
            let mut frame = raw_frame(ApiKey::Metadata as i16, 1, 1, &[]);
            frame.truncate(frame.len() - 1);
            let len = (frame.len() - 4) as i32;
            frame[..4].copy_from_slice(&len.to_be_bytes());
            frame
        }),
        ("garbage body", raw_frame(ApiKey::ApiVersions as i16, 3, 1, &[0x05, b'a'])),
        ("forged array count", raw_frame(ApiKey::Metadata as i16, 12, 1, &forged_compact_count)),
        ("unknown api key", raw_frame(999, 0, 1, &[])),
        ("api not served", raw_frame(ApiKey::FindCoordinator as i16, 1, 1, &[0, 1, b'g'])),
        ("unsupported version", raw_frame(ApiKey::Metadata as i16, 13, 1, &[0, 0, 0, 0])),
        ("produce below v3", raw_frame(ApiKey::Produce as i16, 2, 1, &[0; 16])),
    ];
    for (case, bytes) in cases {
        assert_eq!(closes_after(server.addr, &bytes).await, Vec::<u8>::new(), "{case}: no response, then closed");
        assert_api_versions_works(&mut bystander).await;
    }
    assert_api_versions_works(&mut connect(server.addr).await).await;
}

#[tokio::test]
async fn produce_with_acks_0_gets_no_response() {
    let server = start(echo_handler(), ServerConfig::default(), discard()).await;
    let mut conn = connect(server.addr).await;
    let produce = ProduceRequest::default().with_acks(0).with_timeout_ms(1000);
    conn.write_request(9, &produce).await.unwrap();
    // `send` checks that the next response is this request's.
    let response = conn.send(12, &metadata_for("after")).await.unwrap();
    assert_eq!(response.cluster_id.as_deref(), Some("after"));
}

#[tokio::test]
async fn handler_can_close_the_connection() {
    let server = start(echo_handler(), ServerConfig::default(), discard()).await;
    let mut conn = connect(server.addr).await;
    let result = conn.send(6, &DeleteTopicsRequest::default()).await;
    assert!(matches!(result, Err(ClientError::Closed | ClientError::Io(_))), "{result:?}");
}

/// Forwards every log message to the test.
struct LogEvents(Mutex<mpsc::UnboundedSender<String>>);

impl slog::Drain for LogEvents {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let _ = self.0.lock().unwrap().send(record.msg().to_string());
        Ok(())
    }
}

#[tokio::test]
async fn shutdown_answers_requests_in_flight_then_stops() {
    let gates = Arc::new(Gates::default());
    let (events, mut event) = mpsc::unbounded_channel();
    let (log, mut logged) = mpsc::unbounded_channel();
    let logger = slog::Logger::root(LogEvents(Mutex::new(log)), slog::o!());
    let handler = gated_handler(gates.clone(), events, Arc::default(), Arc::default());
    let server = start(handler, ServerConfig::default(), logger).await;
    let mut conn = connect(server.addr).await;
    let open = gates.close("slow");
    let id = conn.write_request(12, &metadata_for("slow")).await.unwrap();
    assert!(matches!(event.recv().await.unwrap(), Event::Started(_)));

    server.stop.send(()).unwrap();
    while !logged.recv().await.unwrap().starts_with("Kafka listener closed") {}
    open.send(()).unwrap();

    let (got, response) = conn.read_response::<MetadataRequest>(12).await.unwrap();
    assert_eq!((got, response.cluster_id.as_deref()), (id, Some("slow")));
    assert!(matches!(conn.read_response::<MetadataRequest>(12).await, Err(ClientError::Closed | ClientError::Io(_))));
    server.task.await.unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err(), "no longer accepting");
}
