//! The `keel` command line: run a broker, or a whole development cluster on
//! this machine. Real processes only: the simulator assembles brokers itself.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{
    BrokerConfig, ClusterMember, KafkaSection, LogFormat, LoggingSection, RaftSection, StorageSection,
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "keel", version, about = "Keel: a Kafka-compatible event streaming broker on raft")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run one broker from its configuration file.
    Broker {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run a cluster of brokers on this machine (Kafka on 127.0.0.1:9092, 9093, ...) until Ctrl-C.
    Dev {
        /// Where the brokers keep their data (one directory each).
        #[arg(long, default_value = "keel-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        brokers: u16,
        /// The first broker's Kafka port; broker i listens on port + i - 1.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

fn dev_configs(data_dir: &std::path::Path, brokers: u16, port: u16, format: LogFormat) -> Vec<BrokerConfig> {
    let localhost = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Raft traffic 10000 ports above Kafka's, like 9092 -> 19092.
    let cluster: Vec<ClusterMember> =
        (1..=brokers).map(|i| ClusterMember { id: u64::from(i), raft: localhost(port + i - 1 + 10000) }).collect();
    (1..=brokers)
        .map(|i| BrokerConfig {
            node_id: u64::from(i),
            data_dir: data_dir.join(format!("broker-{i}")),
            kafka: KafkaSection { listen: localhost(port + i - 1), advertised: None },
            raft: RaftSection {
                listen: localhost(port + i - 1 + 10000),
                tick_ms: 100,
                election_ticks: 10,
                heartbeat_ticks: 2,
            },
            cluster: cluster.clone(),
            storage: StorageSection::default(),
            logging: LoggingSection { level: "info".into(), format },
        })
        .collect()
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Commands::Broker { config } => {
            let config = BrokerConfig::load(&config).map_err(|e| e.to_string())?;
            let logger = crate::logging::logger(&config.logging.level, config.logging.format)?;
            crate::broker::run(config, logger, shutdown_signal()).await.map_err(|e| e.to_string())
        }
        Commands::Dev { data_dir, brokers, port, json } => {
            if brokers == 0 || port.checked_add(brokers + 10000).is_none() {
                return Err(format!("cannot place {brokers} brokers from port {port}"));
            }
            let format = if json { LogFormat::Json } else { LogFormat::Text };
            let logger = crate::logging::logger("info", format)?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let mut brokers_running = tokio::task::JoinSet::new();
            for config in dev_configs(&data_dir, brokers, port, format) {
                config.validate().map_err(|e| e.to_string())?;
                let mut stopped = stopped.clone();
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                let id = config.node_id;
                let run = crate::broker::run(config, logger.clone(), shutdown);
                brokers_running.spawn(async move { run.await.map_err(|e| format!("broker {id}: {e}")) });
            }
            slog::info!(logger, "dev cluster starting"; "brokers" => brokers,
                "bootstrap" => format!("127.0.0.1:{port}"), "data" => %data_dir.display());
            // Until Ctrl-C, or until a broker stops by itself (which is a failure).
            let mut failures = Vec::new();
            tokio::select! {
                () = shutdown_signal() => slog::info!(logger, "stopping"),
                Some(ended) = brokers_running.join_next() => failures.push(outcome(ended)),
            }
            let _ = stop.send(true);
            while let Some(ended) = brokers_running.join_next().await {
                failures.push(outcome(ended));
            }
            let failures: Vec<String> = failures.into_iter().filter_map(Result::err).collect();
            if failures.is_empty() {
                Ok(())
            } else {
                Err(failures.join("; "))
            }
        }
    }
}

fn outcome(ended: Result<Result<(), String>, tokio::task::JoinError>) -> Result<(), String> {
    ended.map_err(|e| e.to_string()).and_then(|r| r)
}

/// Parses the command line and runs it to completion.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keel: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("keel: {message}");
            ExitCode::FAILURE
        }
    }
}
