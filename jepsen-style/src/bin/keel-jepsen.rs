//! `keel-jepsen check history.jsonl [--idempotent] [--json report.json]`: judges a recorded history.
//! `keel-jepsen run --brokers 3 --duration 120s --nemesis kill,pause,partition --out DIR`: tests a cluster
//! of real `keel broker` processes under faults and judges the history it recorded.
//! `keel-jepsen run --scenario elastic --brokers 3 --duration 120s --out DIR`: the same clients while the
//! cluster grows to five brokers, rebalances, decommissions broker 1 and loses broker 2.
//! Exits 0 when valid, 1 when invalid, 2 when the history cannot be read, the report not written or the
//! harness failed.

use std::path::PathBuf;
use std::process::ExitCode;
#[cfg(not(madsim))]
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jepsen_style::{check, parse, Options};

#[derive(Parser)]
#[command(name = "keel-jepsen", about = "Jepsen-style histories of Kafka clients, and their checker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a history (JSON lines) and print the verdict with examples of each anomaly.
    Check(CheckArgs),
    /// Run real brokers under faults with producers and consumers, then check the history.
    #[cfg(not(madsim))]
    Run(RunArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The history, one event per line.
    history: PathBuf,
    /// The producers were idempotent: a duplicate makes the history invalid.
    #[arg(long)]
    idempotent: bool,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

const INVALID: u8 = 1;
const UNREADABLE: u8 = 2;

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check(args) => run_check(&args),
        #[cfg(not(madsim))]
        Command::Run(args) => run_real(args),
    }
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let text = match std::fs::read_to_string(&args.history) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("keel-jepsen: cannot read {}: {e}", args.history.display());
            return ExitCode::from(UNREADABLE);
        }
    };
    let history = match parse(&text) {
        Ok(history) => history,
        Err(e) => {
            eprintln!("keel-jepsen: {}: {e}", args.history.display());
            return ExitCode::from(UNREADABLE);
        }
    };
    let report = check(&history, &Options { idempotent: args.idempotent, ..Options::default() });
    print!("{report}");
    if let Some(path) = &args.json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(std::io::Error::from)
            .and_then(|json| std::fs::write(path, json));
        if let Err(e) = written {
            eprintln!("keel-jepsen: cannot write {}: {e}", path.display());
            return ExitCode::from(UNREADABLE);
        }
    }
    if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INVALID)
    }
}

#[cfg(not(madsim))]
#[derive(Args)]
struct RunArgs {
    /// faults (the nemesis) or elastic (add two brokers, rebalance, decommission 1, kill 2).
    #[arg(long, default_value = "faults")]
    scenario: String,
    /// Brokers at the start.
    #[arg(long, default_value_t = 3)]
    brokers: usize,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// How long the clients run under faults, e.g. 120s or 2m.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    duration: Duration,
    /// Faults to apply, comma-separated: kill, pause, partition, power (empty: none). Default
    /// kill,pause,partition; the elastic scenario applies none.
    #[arg(long, value_delimiter = ',')]
    nemesis: Option<Vec<String>>,
    /// Target sends per second over all producers.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    #[arg(long, default_value_t = 4)]
    producers: u64,
    #[arg(long, default_value_t = 2)]
    consumers: u64,
    /// The run's directory: history, report, pictures, broker configs, logs and data.
    #[arg(long)]
    out: PathBuf,
    /// The keel binary (default: `keel` next to this program).
    #[arg(long)]
    keel: Option<PathBuf>,
    /// Start the brokers with this planted bug (KEEL_PLANTED_BUG; needs a keel built with the
    /// planted-bugs feature).
    #[arg(long, value_name = "NAME")]
    planted: Option<String>,
    /// Seed of the fault schedule and the clients' choices (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// After the heal, every partition must take a write within this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    liveness_deadline: Duration,
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    final_read_deadline: Duration,
}

#[cfg(not(madsim))]
fn run_real(args: RunArgs) -> ExitCode {
    use jepsen_style::run::{run, FaultKind, RunConfig, Scenario};

    let scenario = match args.scenario.parse::<Scenario>() {
        Ok(scenario) => scenario,
        Err(e) => {
            eprintln!("keel-jepsen: --scenario: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let nemesis = match (scenario, args.nemesis) {
        (Scenario::Faults, nemesis) => {
            nemesis.unwrap_or_else(|| ["kill", "pause", "partition"].map(String::from).to_vec())
        }
        (Scenario::Elastic, None) => Vec::new(),
        (Scenario::Elastic, Some(_)) => {
            eprintln!("keel-jepsen: --nemesis: the elastic scenario applies its own steps, no faults");
            return ExitCode::from(UNREADABLE);
        }
    };
    if scenario == Scenario::Elastic && args.brokers < 3 {
        eprintln!("keel-jepsen: --brokers: the elastic scenario needs at least 3 (it decommissions 1 and kills 2)");
        return ExitCode::from(UNREADABLE);
    }
    let nemesis = nemesis.iter().filter(|s| !s.is_empty()).map(|s| s.parse::<FaultKind>()).collect();
    let nemesis: Vec<FaultKind> = match nemesis {
        Ok(nemesis) => nemesis,
        Err(e) => {
            eprintln!("keel-jepsen: --nemesis: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let keel = args.keel.unwrap_or_else(|| {
        let sibling = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("keel")));
        sibling.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("keel"))
    });
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    let config = RunConfig {
        scenario,
        brokers: args.brokers,
        partitions: args.partitions,
        duration: args.duration,
        nemesis,
        rate: args.rate,
        producers: args.producers.max(1),
        consumers: args.consumers,
        out: args.out,
        keel,
        planted: args.planted,
        seed,
        liveness_deadline: args.liveness_deadline,
        final_read_deadline: args.final_read_deadline,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keel-jepsen: cannot start the runtime: {e}");
            return ExitCode::from(UNREADABLE);
        }
    };
    let out = config.out.clone();
    // Ctrl-C or SIGTERM ends the run early; dropping it kills the brokers and removes the namespaces.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(config) => Some(outcome),
            () = interrupted() => None,
        }
    });
    drop(runtime);
    match outcome {
        None => {
            eprintln!("keel-jepsen: interrupted; brokers stopped, namespaces removed");
            ExitCode::from(UNREADABLE)
        }
        Some(Err(e)) => {
            eprintln!("keel-jepsen: {e}");
            ExitCode::from(UNREADABLE)
        }
        Some(Ok((summary, report))) => {
            print!("{report}");
            if let Some(gap) = &summary.longest_write_gap {
                println!(
                    "longest stretch without an acknowledged write: {:.2} s on {}/{} ({} the {:.0} s goal)",
                    gap.gap_ns as f64 / 1e9,
                    gap.partition.topic,
                    gap.partition.partition,
                    if gap.within_goal { "within" } else { "over" },
                    gap.goal_ns as f64 / 1e9
                );
            }
            println!("run: {} (seed {}); results in {}", summary.verdict, summary.seed, out.display());
            if summary.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(INVALID)
            }
        }
    }
}

#[cfg(not(madsim))]
async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `120s`, `2m`, `500ms` or plain seconds.
#[cfg(not(madsim))]
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len()));
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 120s, 2m or 500ms"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (s, ms or m)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}
