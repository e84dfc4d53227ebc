//! The transport over real TCP on 127.0.0.1. Tests wait on arrivals, never on
//! the clock; the one retry loop (`until_received`) only paces resends.
//! Real sockets only: `transport_sim.rs` runs the transport under madsim.
#![cfg(not(madsim))]

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use raft_node::transport::frame::{encode_frame, encode_handshake};
use raft_node::transport::{Inbound, LinkDecision, LinkFaults, SendError, ShutDown, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

fn config() -> TransportConfig {
    TransportConfig {
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        ..Default::default()
    }
}

/// Turns a hang into a failure; no test comes near it.
async fn guarded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), test).await.expect("test hung")
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Nodes 1..=n, each knowing all the others' real addresses.
async fn cluster(n: u64, config: TransportConfig) -> Vec<(Transport, Inbound)> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(listener().await);
    }
    let addrs: BTreeMap<u64, SocketAddr> = (1..).zip(listeners.iter().map(|l| l.local_addr().unwrap())).collect();
    (1..)
        .zip(listeners)
        .map(|(id, l)| Transport::start(id, l, addrs.clone(), config.clone(), logger()).unwrap())
        .collect()
}

async fn recv(inbound: &mut Inbound) -> (u64, Bytes) {
    inbound.recv().await.expect("inbound closed")
}

async fn recv_n(inbound: &mut Inbound, n: usize) -> Vec<(u64, Bytes)> {
    let mut received = Vec::with_capacity(n);
    while received.len() < n {
        received.push(recv(inbound).await);
    }
    received
}

/// Payload `i` from `from` to `to`: its size varies, its content says who and which.
fn payload(from: u64, to: u64, i: usize) -> Bytes {
    let len = [0, 1, 17, 1000, 100_000][i % 5];
    let mut bytes = format!("{from}>{to}#{i}|").into_bytes();
    bytes.resize(bytes.len() + len, i as u8);
    bytes.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_arrive_intact_in_order_with_the_sender_id() {
    guarded(async {
        const N: usize = 200;
        let mut nodes = cluster(3, config()).await;
        for (from, (transport, _)) in (1..).zip(&nodes) {
            for to in (1..=3).filter(|&to| to != from) {
                for i in 0..N {
                    transport.send(to, payload(from, to, i)).unwrap();
                }
            }
        }
        for (to, (_, inbound)) in (1..).zip(&mut nodes) {
            let mut by_sender: BTreeMap<u64, Vec<Bytes>> = BTreeMap::new();
            for (from, bytes) in recv_n(inbound, 2 * N).await {
                by_sender.entry(from).or_default().push(bytes);
            }
            let senders: Vec<u64> = (1..=3).filter(|&from| from != to).collect();
            assert_eq!(by_sender.keys().copied().collect::<Vec<_>>(), senders);
            for (from, received) in by_sender {
                let expected: Vec<Bytes> = (0..N).map(|i| payload(from, to, i)).collect();
                assert!(received == expected, "{from} -> {to}: payloads differ or are out of order");
            }
        }
        for (transport, _) in &nodes {
            transport.shutdown().await;
        }
    })
    .await
}

/// On a current-thread runtime nothing runs between these sends, so the link
/// finds all of them queued once it has connected.
#[tokio::test]
async fn queued_sends_coalesce_into_frames_up_to_the_cap() {
    guarded(async {
        const N: usize = 1000;
        let mut nodes = cluster(2, config()).await;
        for i in 0..N {
            nodes[0].0.send(2, Bytes::from(vec![i as u8; 10])).unwrap();
        }
        recv_n(&mut nodes[1].1, N).await;
        assert_eq!(nodes[1].0.stats().inbound.frames, 1);
        let link = nodes[0].0.stats().peers[&2];
        assert_eq!((link.sent, link.frames, link.connects), (N as u64, 1, 1));

        // A cap holding ten such payloads (count + 10 * (len + 10 bytes)).
        let mut capped = cluster(2, TransportConfig { max_frame_bytes: 4 + 10 * 14, ..config() }).await;
        for i in 0..N {
            capped[0].0.send(2, Bytes::from(vec![i as u8; 10])).unwrap();
        }
        let received = recv_n(&mut capped[1].1, N).await;
        assert!(received.iter().enumerate().all(|(i, (_, bytes))| bytes[..] == [i as u8; 10]));
        assert_eq!(capped[1].0.stats().inbound.frames, (N / 10) as u64);
        // Alone in a frame: count + len + payload.
        let too_large = Bytes::from(vec![0; 4 + 10 * 14 - 8 + 1]);
        assert_eq!(capped[0].0.send(2, too_large), Err(SendError::TooLarge { len: 137, max: 136 }));
    })
    .await
}

/// Resends `ping` every few milliseconds until anything arrives at `inbound`,
/// for a link that lost everything while its peer was down.
async fn until_received(transport: &Transport, to: u64, inbound: &mut Inbound) -> (u64, Bytes) {
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    loop {
        tokio::select! {
            received = recv(inbound) => return received,
            _ = pace.tick() => { let _ = transport.send(to, Bytes::from_static(b"ping")); }
        }
    }
}

#[tokio::test]
async fn a_down_peer_blocks_no_one_and_catches_up_when_it_comes_back() {
    guarded(async {
        let config = TransportConfig { queue_capacity: 16, ..config() };
        let (a, c) = (listener().await, listener().await);
        let down = listener().await;
        let down_addr = down.local_addr().unwrap();
        drop(down);
        let addrs = BTreeMap::from([(1, a.local_addr().unwrap()), (2, down_addr), (3, c.local_addr().unwrap())]);
        let (a, _a_in) = Transport::start(1, a, addrs.clone(), config.clone(), logger()).unwrap();
        let (_c, mut c_in) = Transport::start(3, c, addrs.clone(), config.clone(), logger()).unwrap();

        // Nothing runs between these sends: the 16-slot queue takes 16.
        let refused = (0..20).filter(|&i| a.send(2, payload(1, 2, i)) == Err(SendError::QueueFull(2))).count();
        assert_eq!(refused, 4);
        for round in 0..10 {
            for i in 0..10 {
                let _ = a.send(2, payload(1, 2, i));
                a.send(3, payload(1, 3, round * 10 + i)).unwrap();
            }
            let received = recv_n(&mut c_in, 10).await;
            let expected: Vec<(u64, Bytes)> = (0..10).map(|i| (1, payload(1, 3, round * 10 + i))).collect();
            assert!(received == expected, "round {round}");
        }
        let to_down = a.stats().peers[&2];
        assert!(to_down.dropped_queue_full >= 4);
        assert_eq!(to_down.sent, 0);
        assert!(to_down.connect_failures > 0);

        let (_b, mut b_in) =
            Transport::start(2, TcpListener::bind(down_addr).await.unwrap(), addrs, config, logger()).unwrap();
        let (from, _) = until_received(&a, 2, &mut b_in).await;
        assert_eq!(from, 1);
        for i in 0..10 {
            a.send(2, payload(1, 2, 1000 + i)).unwrap();
        }
        // Stale pings may still be in flight ahead of these.
        let mut expected: VecDeque<Bytes> = (0..10).map(|i| payload(1, 2, 1000 + i)).collect();
        while let Some(next) = expected.front() {
            let (from, bytes) = recv(&mut b_in).await;
            assert_eq!(from, 1);
            if bytes == next {
                expected.pop_front();
            } else {
                assert!(&bytes[..] == b"ping" || bytes.starts_with(b"1>2#"), "unexpected payload");
            }
        }
        assert!(a.stats().peers[&2].connects >= 1);
    })
    .await
}

async fn assert_dropped(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    // EOF, or a reset when our unread bytes were still in its buffer.
    match stream.read(&mut buf).await {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("the transport wrote {n} bytes to an inbound connection"),
    }
}

async fn raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

#[tokio::test]
async fn bad_bytes_drop_the_connection_and_good_peers_are_served() {
    guarded(async {
        let max = 1 << 20;
        let mut nodes = cluster(2, TransportConfig { max_frame_bytes: max, ..config() }).await;
        let addr = nodes[1].0.local_addr();

        let mut garbage = raw(addr, b"GET / HTTP/1.1\r\nHost: keel\r\n\r\n").await;
        assert_dropped(&mut garbage).await;

        let mut oversized = encode_handshake(9).to_vec();
        oversized.extend_from_slice(&(max + 1).to_be_bytes());
        oversized.extend_from_slice(&[0; 4]);
        assert_dropped(&mut raw(addr, &oversized).await).await;

        let mut frame = BytesMut::new();
        encode_frame(&[Bytes::from_static(b"intact")], &mut frame);
        let mut corrupt = encode_handshake(9).to_vec();
        corrupt.extend_from_slice(&frame);
        *corrupt.last_mut().unwrap() ^= 1;
        assert_dropped(&mut raw(addr, &corrupt).await).await;
        assert_eq!(nodes[1].0.stats().inbound.rejected, 3);

        // The same format, hand-written, is accepted.
        let mut good = encode_handshake(9).to_vec();
        good.extend_from_slice(&frame);
        let _stream = raw(addr, &good).await;
        assert_eq!(recv(&mut nodes[1].1).await, (9, Bytes::from_static(b"intact")));

        nodes[0].0.send(2, payload(1, 2, 3)).unwrap();
        assert_eq!(recv(&mut nodes[1].1).await, (1, payload(1, 2, 3)));
        assert_eq!(nodes[1].0.stats().inbound.rejected, 3);
    })
    .await
}

/// Decisions per destination, in order; `Deliver` once a script runs out.
#[derive(Default)]
struct Script(Mutex<BTreeMap<u64, VecDeque<LinkDecision>>>);

impl Script {
    fn then(&self, to: u64, decisions: impl IntoIterator<Item = LinkDecision>) {
        self.0.lock().unwrap().entry(to).or_default().extend(decisions);
    }
}

impl LinkFaults for Script {
    fn decide(&self, from: u64, to: u64) -> LinkDecision {
        assert_eq!(from, 1);
        self.0.lock().unwrap().get_mut(&to).and_then(VecDeque::pop_front).unwrap_or(LinkDecision::Deliver)
    }
}

#[tokio::test]
async fn the_fault_hook_drops_duplicates_and_delays() {
    guarded(async {
        let script = Arc::new(Script::default());
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(listener().await);
        }
        let addrs: BTreeMap<u64, SocketAddr> = (1..).zip(listeners.iter().map(|l| l.local_addr().unwrap())).collect();
        let mut nodes: Vec<_> = (1..)
            .zip(listeners)
            .map(|(id, l)| {
                let faults: Arc<dyn LinkFaults> = script.clone();
                let config = TransportConfig { faults: (id == 1).then_some(faults), ..config() };
                Transport::start(id, l, addrs.clone(), config, logger()).unwrap()
            })
            .collect();
        let a = nodes[0].0.clone();
        let bytes = |s: &'static str| Bytes::from_static(s.as_bytes());

        script.then(2, [LinkDecision::Drop; 5]);
        for i in 0..6 {
            a.send(2, Bytes::from(vec![i])).unwrap();
        }
        // Per-link order holds without delays, so the first arrival shows the others dropped.
        assert_eq!(recv(&mut nodes[1].1).await, (1, Bytes::from(vec![5])));
        assert_eq!(a.stats().peers[&2].dropped_by_faults, 5);

        script.then(3, [LinkDecision::Duplicate, LinkDecision::Deliver, LinkDecision::Duplicate]);
        for s in ["x", "y", "z"] {
            a.send(3, bytes(s)).unwrap();
        }
        let received: Vec<Bytes> = recv_n(&mut nodes[2].1, 5).await.into_iter().map(|(_, b)| b).collect();
        assert_eq!(received, ["x", "x", "y", "z", "z"].map(bytes));

        // Whenever it comes due, the delayed one is behind the payload after it.
        script.then(2, [LinkDecision::Delay(Duration::from_millis(20))]);
        for s in ["late", "first", "second"] {
            a.send(2, bytes(s)).unwrap();
        }
        let received: Vec<Bytes> = recv_n(&mut nodes[1].1, 3).await.into_iter().map(|(_, b)| b).collect();
        let position = |s| received.iter().position(|b| b == &bytes(s)).expect("arrived");
        assert!(position("first") < position("late") && position("first") < position("second"));
        assert!(position("first") < position("second"));
    })
    .await
}

#[tokio::test]
async fn shutdown_ends_everything_and_refuses_more() {
    guarded(async {
        let mut nodes = cluster(3, config()).await;
        let (a, mut a_in) = nodes.remove(0);
        nodes[0].0.send(1, payload(2, 1, 0)).unwrap();
        assert_eq!(recv(&mut a_in).await, (2, payload(2, 1, 0)));

        assert!(a.remove_peer(3));
        assert!(!a.remove_peer(3));
        assert_eq!(a.send(3, payload(1, 3, 0)), Err(SendError::UnknownPeer(3)));
        assert_eq!(a.stats().peers.keys().copied().collect::<Vec<_>>(), [2]);

        let addr = a.local_addr();
        a.shutdown().await;
        assert_eq!(a_in.recv().await, None);
        assert_eq!(a.send(2, payload(1, 2, 0)), Err(SendError::ShutDown(ShutDown)));
        assert_eq!(a.add_peer(3, addr), Err(ShutDown));
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
        a.shutdown().await;
    })
    .await
}
