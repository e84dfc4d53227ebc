//! The `keel` command line: run a broker, or a whole development cluster on
//! this machine, and work with a running cluster (topics, produce, consume,
//! status) through [`crate::client`]. Real processes only: the simulator
//! assembles brokers itself.

mod cluster;
mod group;
mod output;
mod stream;
mod topic;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::{Acks, Client, ClientConfig, Error};
use crate::config::{
    BrokerConfig, ClusterMember, GroupsSection, KafkaSection, LeadershipSection, LogFormat, LoggingSection,
    MovesSection, RaftSection, StorageSection,
};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use stream::{ConsumeArgs, ProduceArgs, Start};

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
        /// Bytes per second each broker sends to replicas a move adds
        /// ([moves] throttle_bytes_per_sec; default 50 MiB/s); 0: no limit.
        #[arg(long)]
        move_throttle: Option<u64>,
    },
    /// Create, list, describe and delete topics.
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// Send stdin to a topic, one record per line.
    ///
    /// Each line is a value; with --key-separator, a line `key<SEP>value` also
    /// carries a key. Records go to --partition, else by key hash (as Kafka's
    /// default partitioner), else round-robin.
    Produce {
        /// The topic to append to.
        topic: String,
        /// The key of every record.
        #[arg(long, conflicts_with = "key_separator")]
        key: Option<String>,
        /// Split each line into key and value at the first SEP (a tab if given without a value).
        #[arg(long, value_name = "SEP", num_args = 0..=1, default_missing_value = "\t")]
        key_separator: Option<String>,
        /// Send every record to this partition.
        #[arg(long)]
        partition: Option<i32>,
        /// all: wait for a majority of replicas; 1: the leader only; 0: no answer.
        #[arg(long, value_enum, default_value = "all")]
        acks: AcksArg,
        #[command(flatten)]
        common: Common,
    },
    /// Print a topic's records: `partition offset key value` per line (`-` for none).
    ///
    /// Without --follow, reads to the end each partition had at the start and
    /// exits, starting from the beginning unless told otherwise; with --follow,
    /// waits for new records, starting from the end unless told otherwise.
    #[command(group(ArgGroup::new("start").args(["from_beginning", "offset", "timestamp"])))]
    Consume {
        /// The topic to read.
        topic: String,
        /// Read only this partition (default: all of them).
        #[arg(long)]
        partition: Option<i32>,
        /// Start at each partition's earliest offset.
        #[arg(long)]
        from_beginning: bool,
        /// Start at this offset (in every partition read).
        #[arg(long)]
        offset: Option<i64>,
        /// Start at the first record at or after this time (ms since the epoch).
        #[arg(long, value_name = "MS")]
        timestamp: Option<i64>,
        /// Keep waiting for new records.
        #[arg(long)]
        follow: bool,
        /// Stop after printing this many records.
        #[arg(long, value_name = "N")]
        max_messages: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Consumer groups: list them, describe one (members, assignments, committed offsets, lag), reset offsets.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// The state of a running cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// The topic's name.
        name: String,
        /// Partitions (the broker's default: 1).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replicas per partition (the broker's default: 3, or fewer brokers).
        #[arg(long)]
        replication_factor: Option<i16>,
        /// A topic config, e.g. retention.ms=3600000; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = output::parse_config)]
        configs: Vec<(String, String)>,
        #[command(flatten)]
        common: Common,
    },
    /// List the topics.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Show a topic's partitions (leader, replicas, earliest and latest offsets) and configs.
    Describe {
        /// The topic's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a topic and its data.
    Delete {
        /// The topic's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List the consumer groups and their states.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Show a group's members and assignments, and its committed offsets with their lag.
    Describe {
        group: String,
        #[command(flatten)]
        common: Common,
    },
    /// Move a group's committed offsets of a topic (the group must have no members).
    #[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset"])))]
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all of the topic's).
        #[arg(long)]
        partition: Option<i32>,
        #[arg(long)]
        to_earliest: bool,
        #[arg(long)]
        to_latest: bool,
        #[arg(long, value_name = "OFFSET")]
        to_offset: Option<i64>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Brokers, the controller, and each raft group (the metadata log, every partition): its leader, and each replica's log end offset and lag behind it.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Move a partition's replicas (a raft membership change, without downtime), or cancel its move.
    #[command(group(ArgGroup::new("to").required(true).args(["replicas", "cancel"])))]
    Reassign {
        topic: String,
        partition: i32,
        /// The new replicas, preferred leader first.
        #[arg(long, value_delimiter = ',', value_name = "ID,ID,...")]
        replicas: Option<Vec<i32>>,
        /// Cancel the move in progress: the partition moves back.
        #[arg(long)]
        cancel: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Spread replicas and preferred leaders evenly over every registered broker not draining, moving as few as needed.
    Rebalance {
        /// Print the plan without submitting it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Mark a broker draining (no replica is placed on it again, by rebalances
    /// automatic or not, nor by new topics) and move every replica off it, before it is taken away.
    Decommission {
        id: i32,
        /// Print the plan without marking the broker or submitting the moves.
        #[arg(long)]
        dry_run: bool,
        /// Clear the draining mark instead: the broker may take replicas again (nothing moves back by itself).
        #[arg(long, conflicts_with = "dry_run")]
        undo: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Set how fast moves copy: the bytes per second each broker sends to the
    /// replicas moves add (Kafka's leader.replication.throttled.rate), for
    /// every broker or one. It overrides [moves] throttle_bytes_per_sec until cleared.
    #[command(group(ArgGroup::new("rate").required(true).args(["bytes_per_sec", "clear"])))]
    Throttle {
        /// Bytes per second; 0: no limit.
        bytes_per_sec: Option<u64>,
        /// Clear it: back to each broker's [moves] setting (with --broker, to the one for every broker).
        #[arg(long)]
        clear: bool,
        /// Only this broker.
        #[arg(long)]
        broker: Option<i32>,
        #[command(flatten)]
        common: Common,
    },
    /// Take a broker out of the cluster for good, once decommission has moved
    /// every replica off it (refused until then)
    RemoveBroker {
        id: i32,
        #[command(flatten)]
        common: Common,
    },
}

/// What every client command takes.
#[derive(Args)]
pub struct Common {
    /// Brokers to start from, comma separated.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092", value_delimiter = ',')]
    bootstrap: Vec<String>,
    /// Print JSON for machines instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    All,
    #[value(name = "1")]
    Leader,
    #[value(name = "0")]
    None,
}

/// Connects to the cluster, or says why not and what to do.
async fn connect(common: &Common) -> Result<Client, String> {
    Client::connect(ClientConfig::new(common.bootstrap.clone())).await.map_err(|e| output::explain(&e, &[]))
}

/// Explains `error`, with the cluster's topics at hand to suggest a name.
async fn fail(client: &mut Client, error: Error) -> String {
    let topics = match (&error, client.metadata().await) {
        (Error::UnknownTopic(_), Ok(cluster)) => cluster.topics.keys().cloned().collect(),
        _ => Vec::new(),
    };
    output::explain(&error, &topics)
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

fn dev_configs(
    data_dir: &std::path::Path,
    brokers: u16,
    port: u16,
    format: LogFormat,
    moves: MovesSection,
) -> Vec<BrokerConfig> {
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
                advertised: None,
                tick_ms: 100,
                election_ticks: 10,
                heartbeat_ticks: 2,
            },
            cluster: cluster.clone(),
            leadership: LeadershipSection::default(),
            moves: moves.clone(),
            storage: StorageSection::default(),
            groups: GroupsSection::default(),
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
        Commands::Dev { data_dir, brokers, port, json, move_throttle } => {
            if brokers == 0 || port.checked_add(brokers + 10000).is_none() {
                return Err(format!("cannot place {brokers} brokers from port {port}"));
            }
            let format = if json { LogFormat::Json } else { LogFormat::Text };
            let logger = crate::logging::logger("info", format)?;
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let mut brokers_running = tokio::task::JoinSet::new();
            let defaults = MovesSection::default();
            let moves = MovesSection {
                throttle_bytes_per_sec: move_throttle.unwrap_or(defaults.throttle_bytes_per_sec),
                ..defaults
            };
            for config in dev_configs(&data_dir, brokers, port, format, moves) {
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
        Commands::Topic { command } => match command {
            TopicCommand::Create { name, partitions, replication_factor, configs, common } => {
                topic::create(&common, &name, partitions, replication_factor, configs).await
            }
            TopicCommand::List { common } => topic::list(&common).await,
            TopicCommand::Describe { name, common } => topic::describe(&common, &name).await,
            TopicCommand::Delete { name, common } => topic::delete(&common, &name).await,
        },
        Commands::Group { command } => match command {
            GroupCommand::List { common } => group::list(&common).await,
            GroupCommand::Describe { group, common } => group::describe(&common, &group).await,
            GroupCommand::ResetOffsets { group, topic, partition, to_earliest, to_latest: _, to_offset, common } => {
                let to = match (to_earliest, to_offset) {
                    (true, _) => group::ResetTo::Earliest,
                    (_, Some(offset)) => group::ResetTo::Offset(offset),
                    _ => group::ResetTo::Latest,
                };
                group::reset_offsets(&common, &group, &topic, partition, to).await
            }
        },
        Commands::Cluster { command } => match command {
            ClusterCommand::Status { common } => topic::cluster_status(&common).await,
            ClusterCommand::Reassign { topic, partition, replicas, cancel: _, common } => {
                cluster::reassign(&common, &topic, partition, replicas).await
            }
            ClusterCommand::Rebalance { dry_run, common } => cluster::rebalance(&common, dry_run).await,
            ClusterCommand::Decommission { id, undo: true, common, .. } => {
                cluster::undo_decommission(&common, id).await
            }
            ClusterCommand::Decommission { id, dry_run, common, .. } => {
                cluster::decommission(&common, id, dry_run).await
            }
            ClusterCommand::RemoveBroker { id, common } => cluster::remove_broker(&common, id).await,
            ClusterCommand::Throttle { bytes_per_sec, clear: _, broker, common } => {
                cluster::throttle(&common, broker, bytes_per_sec).await
            }
        },
        Commands::Produce { topic, key, key_separator, partition, acks, common } => {
            let acks = match acks {
                AcksArg::All => Acks::All,
                AcksArg::Leader => Acks::Leader,
                AcksArg::None => Acks::None,
            };
            let key_separator = key_separator.map(|s| unescape(&s));
            stream::produce(&common, ProduceArgs { topic, key, key_separator, partition, acks }).await
        }
        Commands::Consume { topic, partition, from_beginning, offset, timestamp, follow, max_messages, common } => {
            let start = match (from_beginning, offset, timestamp) {
                (true, _, _) => Start::Beginning,
                (_, Some(offset), _) => Start::Offset(offset),
                (_, _, Some(ms)) => Start::Timestamp(ms),
                _ if follow => Start::End,
                _ => Start::Beginning,
            };
            stream::consume(&common, ConsumeArgs { topic, partition, start, follow, max_messages }).await
        }
    }
}

/// Makes a client command whose output is cut short (`keel topic list | head
/// -1`) end as any Unix filter does, killed by SIGPIPE without a word, where
/// Rust's default (SIGPIPE ignored) turns the next print into a panic. Brokers
/// keep that default: a closed log pipe must not kill one. Sockets never raise
/// SIGPIPE either way (std sends with MSG_NOSIGNAL). Call before any thread
/// starts: the disposition is process-wide.
fn end_quietly_when_stdout_closes() {
    // From the C library std links anyway; the libc crate would add a
    // dependency for this one call. The crate is Unix-only (see FileDisk).
    extern "C" {
        fn signal(signum: std::ffi::c_int, handler: usize) -> usize;
    }
    const SIGPIPE: std::ffi::c_int = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: `signal` has this signature on every Unix, SIGPIPE is 13 and
    // SIG_DFL is 0 on all of them, and no other thread exists yet.
    unsafe { signal(SIGPIPE, SIG_DFL) };
}

/// `\t` and `\n` as typed on a command line, for --key-separator.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

fn outcome(ended: Result<Result<(), String>, tokio::task::JoinError>) -> Result<(), String> {
    ended.map_err(|e| e.to_string()).and_then(|r| r)
}

/// Parses the command line and runs it to completion.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Commands::Broker { .. } | Commands::Dev { .. }) {
        end_quietly_when_stdout_closes();
    }
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
