//! The whole Keel cluster inside madsim: the real broker code on simulated
//! nodes, disks and network, driven from one seed. Build it with
//! `RUSTFLAGS="--cfg madsim"` into its own target directory.
//!
//! `keel-sim` (src/bin) runs one seed ([`run::run`]), replays a trace, or
//! sweeps seeds; see `traces/README.md`.

pub mod config;
pub mod invariants;
pub mod rng;
pub mod schedule;
pub mod trace;

#[cfg(madsim)]
pub mod cluster;
#[cfg(madsim)]
pub mod faults;
#[cfg(madsim)]
pub mod group_consumer;
#[cfg(madsim)]
pub mod joiner;
#[cfg(madsim)]
pub mod mover;
#[cfg(madsim)]
pub mod nemesis;
#[cfg(madsim)]
pub mod run;
#[cfg(madsim)]
pub mod workload;
