//! `keel-jepsen check history.jsonl [--idempotent] [--json report.json]`: judges a recorded history.
//! Exits 0 when valid, 1 when invalid, 2 when the history cannot be read (or the report not written).

use std::path::PathBuf;
use std::process::ExitCode;

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
    let report = check(&history, &Options { idempotent: args.idempotent });
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
