//! `keel`: see `raft_node::cli`.

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    raft_node::cli::main()
}

#[cfg(madsim)]
fn main() {
    eprintln!("keel runs real brokers; build it without --cfg madsim (the simulator is keel-sim)");
    std::process::exit(2);
}
