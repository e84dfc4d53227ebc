//! `keel-sim`: the whole Keel cluster inside madsim, from one seed.
//!
//! ```text
//! keel-sim run --seed N [--brokers 3..7] [--partitions N] [--duration 60s] [--faults all|none|LIST|schedule:S] [--moves 1] [--join 1] [--auto-rebalance 1]
//!              [--schedule FILE] [--trace FILE]
//! keel-sim replay TRACE
//! keel-sim sweep --seeds A..B [--jobs 2] [--brokers ..] [--partitions ..] [--duration 60s] [--faults all] [--trace-dir DIR] [--keep-traces all|A,B,..]
//! ```
//!
//! Build it with `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim`.

#[cfg(not(madsim))]
fn main() {
    eprintln!(
        "keel-sim runs the cluster inside the madsim simulator; build it with \
         RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run -p sim --bin keel-sim"
    );
    std::process::exit(2);
}

#[cfg(madsim)]
fn main() {
    std::process::exit(sim_main::main(std::env::args().skip(1).collect()));
}

#[cfg(madsim)]
mod sim_main {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use sim::config::{parse_header, Faults, SimConfig};
    use sim::run::{run, Outcome};
    use sim::schedule::Schedule;

    const USAGE: &str = "usage:
  keel-sim run --seed N [--brokers 3..7 (5)] [--partitions N (8)] [--duration 60s] [--faults all|none|LIST|schedule:S] [--moves 1] [--join 1] [--auto-rebalance 1]
               [--schedule FILE] [--trace FILE (./sim-N.trace)]
  keel-sim replay TRACE [--trace NEW (./NAME.replay.trace)]
  keel-sim sweep --seeds A..B [--jobs 2] [--brokers 5] [--partitions 8] [--duration 60s] [--faults all] [--trace-dir DIR (.)]
                 [--keep-traces failed|all|A,B,.. (failed: the failed seeds' traces; or also these seeds')]
faults: all (the seed draws which are on; all,-corrupt leaves corrupt out), none, or a list of
  kill, pause, partition, loss, duplicate, delay, corrupt, power; or exactly the episodes of a
  schedule (sim/src/schedule.rs), e.g. schedule:500+3000=kill(1,2);0+2000=noise(loss=0.1,dup=0,delay=0.2<300)
  (--schedule FILE reads it from a file)
exit status: 0 valid, 1 invalid, 2 usage, 3 a replay whose run is valid but whose trace differs";

    pub fn main(args: Vec<String>) -> i32 {
        let result = match args.first().map(String::as_str) {
            Some("run") => cmd_run(&args[1..]),
            Some("replay") => cmd_replay(&args[1..]),
            Some("sweep") => cmd_sweep(&args[1..]),
            Some("-h" | "--help" | "help") => {
                println!("{USAGE}");
                return 0;
            }
            _ => Err("expected a command: run, replay or sweep".to_string()),
        };
        result.unwrap_or_else(|e| {
            eprintln!("keel-sim: {e}\n{USAGE}");
            2
        })
    }

    /// Flags as `--name value` pairs, in order.
    fn pairs(args: &[String]) -> Result<Vec<(&str, &str)>, String> {
        if args.len() % 2 != 0 {
            return Err(format!("flags come in pairs (--flag value): {args:?}"));
        }
        Ok(args.chunks(2).map(|p| (p[0].as_str(), p[1].as_str())).collect())
    }

    fn command(config: &SimConfig) -> String {
        config.command()
    }

    fn summary(config: &SimConfig, outcome: &Outcome, trace: &Path) {
        let speed = outcome.simulated.as_secs_f64() / outcome.wall.as_secs_f64().max(1e-9);
        println!("seed {} ({})", config.seed, config.flags());
        println!("  faults on:   {}", outcome.plan);
        println!("  operations:  {} ({} writes acknowledged)", outcome.ops, outcome.acked);
        println!(
            "  faults:      {} injected; broker messages cut {}, lost {}, duplicated {}, delayed {}",
            outcome.faults, outcome.net.cut, outcome.net.lost, outcome.net.duplicated, outcome.net.delayed
        );
        println!("  elections:   {}", outcome.elections);
        println!(
            "  time:        {:.1}s simulated in {:.1}s wall ({speed:.1}x)",
            outcome.simulated.as_secs_f64(),
            outcome.wall.as_secs_f64()
        );
        println!("  trace:       {}", trace.display());
        println!("  verdict:     {}", outcome.verdict);
        if !outcome.valid {
            println!("\n{}", outcome.details.trim_end());
            println!("\nreplay: {}", command(config));
        }
    }

    fn write_trace(path: &Path, outcome: &Outcome) -> Result<(), String> {
        std::fs::write(path, &outcome.trace).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    fn cmd_run(args: &[String]) -> Result<i32, String> {
        let mut config = SimConfig::new(0);
        let mut seed = false;
        let mut trace = None;
        for (flag, value) in pairs(args)? {
            seed |= flag == "--seed";
            if flag == "--trace" {
                trace = Some(PathBuf::from(value));
            } else if flag == "--schedule" {
                let text = std::fs::read_to_string(value).map_err(|e| format!("--schedule {value}: {e}"))?;
                let text = text.trim();
                let schedule = Schedule::parse(text.strip_prefix("schedule:").unwrap_or(text))
                    .map_err(|e| format!("--schedule {value}: {e}"))?;
                config.faults = Faults::Scheduled(schedule);
            } else if !config.set(flag, value)? {
                return Err(format!("unknown flag {flag}"));
            }
        }
        if !seed {
            return Err("run needs --seed N".into());
        }
        config.check()?;
        let trace = trace.unwrap_or_else(|| PathBuf::from(format!("sim-{}.trace", config.seed)));
        let outcome = run(&config);
        write_trace(&trace, &outcome)?;
        summary(&config, &outcome, &trace);
        Ok(if outcome.valid { 0 } else { 1 })
    }

    fn cmd_replay(args: &[String]) -> Result<i32, String> {
        let (path, new_path) = match args {
            [path] => {
                let name = Path::new(path).file_stem().map_or("sim".into(), |s| s.to_string_lossy().into_owned());
                (path, PathBuf::from(format!("{name}.replay.trace")))
            }
            [path, flag, out] if flag == "--trace" => (path, PathBuf::from(out)),
            _ => return Err("replay takes a trace file, and optionally --trace FILE for the new trace".into()),
        };
        let old = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
        let old_text = String::from_utf8_lossy(&old).into_owned();
        let (config, old_build) = parse_header(&old_text).map_err(|e| format!("{path}: {e}"))?;
        println!("replaying {path}: {}", command(&config));
        let outcome = run(&config);
        write_trace(&new_path, &outcome)?;
        let identical = outcome.trace == old;
        if identical {
            println!("identical: the new trace matches {path} byte for byte");
        } else {
            let new_text = String::from_utf8_lossy(&outcome.trace).into_owned();
            let new_build = sim::config::build();
            if old_build != new_build {
                println!("the build differs: the trace was recorded by {old_build}, this is {new_build}");
            }
            let differs =
                |(_, (a, b)): &(usize, (&str, &str))| a != b && !(a.starts_with("build: ") && b.starts_with("build: "));
            let mut old_lines = old_text.lines().chain(std::iter::repeat("<end of trace>"));
            let mut new_lines = new_text.lines().chain(std::iter::repeat("<end of trace>"));
            let lines = old_text.lines().count().max(new_text.lines().count());
            let first = (0..lines)
                .map(|i| (i, (old_lines.next().unwrap_or_default(), new_lines.next().unwrap_or_default())))
                .find(|pair| differs(pair));
            match first {
                Some((i, (a, b))) => {
                    println!("DIFFERENT: first difference at line {}", i + 1);
                    println!("  old: {a}");
                    println!("  new: {b}");
                }
                None => println!("identical except for the build line"),
            }
        }
        summary(&config, &outcome, &new_path);
        Ok(match (outcome.valid, identical) {
            (true, true) => 0,
            (false, _) => 1,
            (true, false) => 3,
        })
    }

    fn parse_seeds(text: &str) -> Result<(u64, u64), String> {
        let bad = || format!("--seeds {text:?}: expected A..B (inclusive), e.g. 1..200");
        let (a, b) = text.split_once("..").ok_or_else(bad)?;
        let a: u64 = a.parse().map_err(|_| bad())?;
        let b: u64 = b.trim_start_matches('=').parse().map_err(|_| bad())?;
        if b < a {
            return Err(bad());
        }
        Ok((a, b))
    }

    /// Which traces a sweep writes besides the failed seeds': a valid seed's
    /// trace is what a single `run` of it must repeat byte for byte.
    enum Keep {
        Failed,
        All,
        Seeds(BTreeSet<u64>),
    }

    impl Keep {
        fn parse(text: &str) -> Result<Keep, String> {
            match text {
                "failed" => Ok(Keep::Failed),
                "all" => Ok(Keep::All),
                _ => text
                    .split(',')
                    .map(|seed| {
                        seed.parse().map_err(|_| format!("--keep-traces {text:?}: expected failed, all or A,B,.."))
                    })
                    .collect::<Result<_, _>>()
                    .map(Keep::Seeds),
            }
        }

        fn keeps_valid(&self, seed: u64) -> bool {
            match self {
                Keep::Failed => false,
                Keep::All => true,
                Keep::Seeds(seeds) => seeds.contains(&seed),
            }
        }
    }

    fn cmd_sweep(args: &[String]) -> Result<i32, String> {
        let mut template = SimConfig::new(0);
        let mut seeds = None;
        let mut jobs = 2usize;
        let mut dir = PathBuf::from(".");
        let mut keep = Keep::Failed;
        for (flag, value) in pairs(args)? {
            match flag {
                "--seeds" => seeds = Some(parse_seeds(value)?),
                "--jobs" => jobs = value.parse().map_err(|e| format!("--jobs {value}: {e}"))?,
                "--trace-dir" => dir = PathBuf::from(value),
                "--keep-traces" => keep = Keep::parse(value)?,
                "--seed" => return Err("sweep takes --seeds A..B".into()),
                _ if template.set(flag, value)? => {}
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        let (first, last) = seeds.ok_or("sweep needs --seeds A..B")?;
        template.check()?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("--trace-dir {}: {e}", dir.display()))?;
        let jobs = jobs.max(1);
        let started = Instant::now();
        let next = Arc::new(AtomicUsize::new(0));
        let seeds: Vec<u64> = (first..=last).collect();
        let results = Arc::new(Mutex::new(BTreeMap::new()));
        println!("sweep: seeds {first}..={last} ({}), {jobs} jobs, {}", seeds.len(), template.flags());
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                let (next, results, seeds, template, dir, keep) = (&next, &results, &seeds, &template, &dir, &keep);
                // Each thread runs whole simulations, each on its own madsim runtime.
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { return };
                    let config = SimConfig { seed, ..template.clone() };
                    let outcome = run(&config);
                    let mut note = String::new();
                    if !outcome.valid || keep.keeps_valid(seed) {
                        let path = dir.join(format!("sim-{seed}.trace"));
                        if let Err(e) = write_trace(&path, &outcome) {
                            note = format!(" ({e})");
                        } else {
                            note = format!(" (trace {})", path.display());
                        }
                    }
                    println!(
                        "seed {seed:>6}: {} ops, {} acked, {} faults, {:.0}s sim in {:.1}s: {}{note}",
                        outcome.ops,
                        outcome.acked,
                        outcome.faults,
                        outcome.simulated.as_secs_f64(),
                        outcome.wall.as_secs_f64(),
                        outcome.verdict
                    );
                    results.lock().unwrap_or_else(|p| p.into_inner()).insert(seed, (outcome.valid, outcome.verdict));
                });
            }
        });
        let results = results.lock().unwrap_or_else(|p| p.into_inner());
        let failed: Vec<_> = results.iter().filter(|(_, (valid, _))| !valid).collect();
        println!(
            "\nsweep: {} seeds, {} failed, {:.1}s wall",
            results.len(),
            failed.len(),
            started.elapsed().as_secs_f64()
        );
        if !failed.is_empty() {
            println!("\n{:>8}  {:<60}  replay", "seed", "verdict");
            for (seed, (_, verdict)) in &failed {
                let config = SimConfig { seed: **seed, ..template.clone() };
                let mut short = verdict.clone();
                if short.len() > 60 {
                    short.truncate(57);
                    short.push_str("...");
                }
                println!("{seed:>8}  {short:<60}  {}", command(&config));
            }
        }
        Ok(if failed.is_empty() { 0 } else { 1 })
    }
}
