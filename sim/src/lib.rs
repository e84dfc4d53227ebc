//! The whole Keel cluster inside madsim: the real broker code on simulated
//! nodes, disks and network, driven from one seed. Build it with
//! `RUSTFLAGS="--cfg madsim"` into its own target directory.

pub mod trace;
