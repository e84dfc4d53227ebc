//! The fixture the simulator tests share.

use sim::config::SimConfig;

/// Runs the simulation of `seed` with `flags` (as `keel-sim run` takes
/// them), asserts that it was valid, and returns its trace.
pub fn run(seed: u64, flags: &[(&str, &str)]) -> String {
    let mut config = SimConfig::new(seed);
    for &(flag, value) in flags {
        assert_eq!(config.set(flag, value), Ok(true), "{flag} {value} is a valid config flag");
    }
    let outcome = sim::run::run(&config);
    assert!(outcome.valid, "{}: {}\n{}", config.command(), outcome.verdict, outcome.details);
    String::from_utf8_lossy(&outcome.trace).into_owned()
}
