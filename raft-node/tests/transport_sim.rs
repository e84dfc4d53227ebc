//! The transport inside madsim: three brokers on simulated TCP with a seeded
//! nemesis duplicating and delaying through the fault hook. Everything sent
//! arrives, and the same seed replays the same arrivals.
//! Run with `RUSTFLAGS="--cfg madsim" cargo test -p raft-node --test transport_sim`.
#![cfg(madsim)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use madsim::runtime::Runtime;
use madsim::Config;
use raft_node::transport::{LinkDecision, LinkFaults, Transport, TransportConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::TcpListener;
use tokio::sync::Barrier;

const N: u64 = 100;

/// Duplicates a tenth and delays a fifth by up to 50 ms; drops nothing, so
/// that every payload must arrive.
struct Nemesis(Mutex<ChaCha8Rng>);

impl LinkFaults for Nemesis {
    fn decide(&self, _from: u64, _to: u64) -> LinkDecision {
        let mut rng = self.0.lock().unwrap();
        match rng.gen_range(0..10) {
            0 => LinkDecision::Duplicate,
            1 | 2 => LinkDecision::Delay(Duration::from_millis(rng.gen_range(0..50))),
            _ => LinkDecision::Deliver,
        }
    }
}

/// What each broker received, in arrival order, as (from, index).
fn run(seed: u64) -> BTreeMap<u64, Vec<(u64, u64)>> {
    let runtime = Runtime::with_seed_and_config(seed, Config::default());
    let addrs: BTreeMap<u64, SocketAddr> =
        (1..=3).map(|id| (id, format!("10.0.0.{id}:7000").parse().unwrap())).collect();
    let started = Arc::new(Barrier::new(3));
    let finished = Arc::new(Barrier::new(3));
    let brokers: Vec<_> = addrs
        .iter()
        .map(|(&id, &addr)| {
            let node = runtime.create_node().name(format!("broker-{id}")).ip(addr.ip()).build();
            let (addrs, started, finished) = (addrs.clone(), started.clone(), finished.clone());
            node.spawn(async move {
                let listener = TcpListener::bind(addr).await.unwrap();
                let config = TransportConfig {
                    seed,
                    faults: Some(Arc::new(Nemesis(Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ id))))),
                    ..Default::default()
                };
                let logger = slog::Logger::root(slog::Discard, slog::o!());
                let (transport, mut inbound) = Transport::start(id, listener, addrs.clone(), config, logger).unwrap();
                started.wait().await;
                for i in 0..N {
                    for &to in addrs.keys().filter(|&&to| to != id) {
                        transport.send(to, Bytes::from(format!("{id}:{i}"))).unwrap();
                    }
                }
                let mut arrivals = Vec::new();
                let mut distinct = BTreeSet::new();
                while distinct.len() < 2 * N as usize {
                    let (from, payload) = inbound.recv().await.unwrap();
                    let text = std::str::from_utf8(&payload).unwrap();
                    let (sender, index) = text.split_once(':').unwrap();
                    assert_eq!(sender.parse::<u64>().unwrap(), from, "payload attributed to the wrong sender");
                    let index: u64 = index.parse().unwrap();
                    assert!(index < N);
                    arrivals.push((from, index));
                    distinct.insert((from, index));
                }
                // Keep the links up until every broker has everything.
                finished.wait().await;
                transport.shutdown().await;
                (id, arrivals)
            })
        })
        .collect();
    runtime.block_on(async move {
        let mut received = BTreeMap::new();
        for broker in brokers {
            let (id, arrivals) = broker.await.unwrap();
            received.insert(id, arrivals);
        }
        received
    })
}

#[test]
fn everything_arrives_through_duplication_and_delay_and_replays_from_the_seed() {
    let first = run(7);
    for (id, arrivals) in &first {
        // The seed fixes the nemesis's choices, so these are facts of seed 7, not chances.
        assert!(arrivals.len() > 2 * N as usize, "broker {id} saw no duplicate");
        let reordered = |sender: u64| {
            let indices: Vec<u64> = arrivals.iter().filter(|(from, _)| *from == sender).map(|&(_, i)| i).collect();
            indices.windows(2).any(|pair| pair[0] > pair[1])
        };
        assert!((1..=3).filter(|&sender| sender != *id).all(reordered), "broker {id} saw a link in order");
    }
    assert_eq!(first, run(7), "same seed, different arrivals");
    assert_ne!(first, run(8), "the seed does not reach the nemesis");
}
