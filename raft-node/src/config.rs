//! The broker's configuration file (`keel broker --config keel.toml`).
//!
//! ```toml
//! node_id = 1                      # >= 1, unique in the cluster
//! data_dir = "keel-data/broker-1"
//!
//! [kafka]
//! listen = "127.0.0.1:9092"        # where Kafka clients connect
//! advertised = "127.0.0.1:9092"    # what Metadata tells them (default: listen)
//!
//! [raft]
//! listen = "127.0.0.1:19092"       # broker-to-broker traffic
//! # advertised = "10.0.0.5:19092"  # where other brokers reach it (default: its
//! #                                # [[cluster]] entry, else listen)
//! tick_ms = 100                    # one raft tick
//! election_ticks = 10              # election timeout, in ticks (randomized up to 2x)
//! heartbeat_ticks = 2
//!
//! [[cluster]]                      # the brokers that formed the cluster (the founders:
//! id = 1                           # the metadata group's first voters)
//! raft = "127.0.0.1:19092"
//! # ... one entry per founder, the same list on every broker. A broker whose
//! # node_id is not listed is a joiner: it starts empty and asks the founders
//! # to let it into the running cluster (it then keeps in touch with every
//! # registered broker, also after a restart).
//!
//! [leadership]
//! auto_rebalance = true            # hand leadership back to preferred replicas
//!                                  # (Kafka's auto.leader.rebalance.enable)
//! check_ms = 5000                  # how often each broker looks
//! max_transfers = 2                # hand-overs one broker runs at once
//!
//! [moves]                          # partition replicas moving between brokers
//! throttle_bytes_per_sec = 52428800  # what a broker sends to replicas catching
//!                                  # up (learners), all partitions together;
//!                                  # 0: no limit (Kafka's leader.replication.throttled.rate)
//! auto_rebalance = false           # spread replicas over the brokers without being
//!                                  # asked (as `keel cluster rebalance` does)
//! auto_rebalance_check_ms = 30000  # how often the metadata leader looks
//!
//! [storage]
//! segment_bytes = 67108864         # segment roll size; a topic's segment.bytes overrides it
//! retention_check_ms = 10000       # how often topics' retention.ms/.bytes are applied
//!
//! [groups]
//! offsets_partitions = 8           # partitions of __consumer_offsets (set when it is created)
//!
//! [logging]
//! level = "info"                   # or the KEEL_LOG environment variable
//! format = "text"                  # or "json"
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub kafka: KafkaSection,
    pub raft: RaftSection,
    pub cluster: Vec<ClusterMember>,
    #[serde(default)]
    pub leadership: LeadershipSection,
    #[serde(default)]
    pub moves: MovesSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub groups: GroupsSection,
    #[serde(default)]
    pub logging: LoggingSection,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    pub listen: SocketAddr,
    /// `host:port` clients are told to use; defaults to `listen`.
    pub advertised: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftSection {
    pub listen: SocketAddr,
    /// Where other brokers reach this one; defaults to its `[[cluster]]`
    /// entry, else `listen`. A joiner registers it.
    #[serde(default)]
    pub advertised: Option<SocketAddr>,
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    #[serde(default = "default_election_ticks")]
    pub election_ticks: usize,
    #[serde(default = "default_heartbeat_ticks")]
    pub heartbeat_ticks: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterMember {
    pub id: u64,
    pub raft: SocketAddr,
}

/// Preferred leadership: the first replica of each partition (the metadata
/// spreads those evenly) leads it whenever it can.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadershipSection {
    #[serde(default = "default_auto_rebalance")]
    pub auto_rebalance: bool,
    #[serde(default = "default_leadership_check_ms")]
    pub check_ms: u64,
    #[serde(default = "default_max_transfers")]
    pub max_transfers: usize,
}

/// Partition replicas moving between brokers (`keel cluster rebalance`,
/// `decommission`, `reassign`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovesSection {
    /// Bytes per second this broker sends to learners, so that moves never
    /// starve produce traffic; 0 for no limit.
    #[serde(default = "default_throttle_bytes_per_sec")]
    pub throttle_bytes_per_sec: u64,
    #[serde(default)]
    pub auto_rebalance: bool,
    #[serde(default = "default_auto_rebalance_check_ms")]
    pub auto_rebalance_check_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    #[serde(default = "default_retention_check_ms")]
    pub retention_check_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsSection {
    /// Kafka's `offsets.topic.num.partitions`: each is a raft group, and
    /// coordinates the consumer groups whose ids hash to it.
    #[serde(default = "default_offsets_partitions")]
    pub offsets_partitions: i32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LeadershipSection {
    fn default() -> Self {
        LeadershipSection {
            auto_rebalance: default_auto_rebalance(),
            check_ms: default_leadership_check_ms(),
            max_transfers: default_max_transfers(),
        }
    }
}

impl Default for MovesSection {
    fn default() -> Self {
        MovesSection {
            throttle_bytes_per_sec: default_throttle_bytes_per_sec(),
            auto_rebalance: false,
            auto_rebalance_check_ms: default_auto_rebalance_check_ms(),
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { segment_bytes: default_segment_bytes(), retention_check_ms: default_retention_check_ms() }
    }
}

impl Default for GroupsSection {
    fn default() -> Self {
        GroupsSection { offsets_partitions: default_offsets_partitions() }
    }
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection { level: default_level(), format: LogFormat::Text }
    }
}

fn default_tick_ms() -> u64 {
    100
}
fn default_election_ticks() -> usize {
    10
}
fn default_heartbeat_ticks() -> usize {
    2
}
fn default_auto_rebalance() -> bool {
    true
}
fn default_leadership_check_ms() -> u64 {
    5_000
}
fn default_max_transfers() -> usize {
    2
}
/// 50 MiB/s: a 1 GiB partition moves in about 20 s.
fn default_throttle_bytes_per_sec() -> u64 {
    50 << 20
}
fn default_auto_rebalance_check_ms() -> u64 {
    30_000
}
fn default_segment_bytes() -> u64 {
    64 << 20
}
fn default_retention_check_ms() -> u64 {
    10_000
}
/// Kafka's default is 50; a handful spreads the coordinators over a small cluster.
fn default_offsets_partitions() -> i32 {
    8
}
fn default_level() -> String {
    "info".to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl BrokerConfig {
    pub fn load(path: &std::path::Path) -> Result<BrokerConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let config: BrokerConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.node_id == 0 || self.node_id > i32::MAX as u64 {
            return invalid(format!("node_id {} must be between 1 and {}", self.node_id, i32::MAX));
        }
        let ids: BTreeSet<u64> = self.cluster.iter().map(|m| m.id).collect();
        if ids.len() != self.cluster.len() {
            return invalid("two [[cluster]] entries share an id".into());
        }
        if ids.is_empty() {
            return invalid("[[cluster]] must name the founders (this broker, or those a joiner contacts)".into());
        }
        let raft = self.raft_address();
        if raft.ip().is_unspecified() || raft.port() == 0 {
            return invalid(format!("raft address {raft} cannot be dialled: set raft.advertised"));
        }
        if self.raft.election_ticks <= self.raft.heartbeat_ticks || self.raft.tick_ms == 0 {
            return invalid("raft: election_ticks must exceed heartbeat_ticks, and tick_ms be positive".into());
        }
        if self.groups.offsets_partitions < 1 {
            return invalid(format!(
                "groups.offsets_partitions must be at least 1, got {}",
                self.groups.offsets_partitions
            ));
        }
        let leadership = &self.leadership;
        if leadership.auto_rebalance && (leadership.check_ms == 0 || leadership.max_transfers == 0) {
            return invalid("leadership: check_ms and max_transfers must be positive with auto_rebalance".into());
        }
        if self.moves.auto_rebalance && self.moves.auto_rebalance_check_ms == 0 {
            return invalid("moves: auto_rebalance_check_ms must be positive with auto_rebalance".into());
        }
        let (host, port) = self.advertised();
        if host.is_empty() || port == 0 {
            return invalid(format!("kafka.advertised must be host:port, got {:?}", self.kafka.advertised));
        }
        Ok(())
    }

    /// Whether this broker joins a running cluster instead of founding it.
    pub fn is_joiner(&self) -> bool {
        !self.cluster.iter().any(|m| m.id == self.node_id)
    }

    /// Where other brokers reach this one's raft transport.
    pub fn raft_address(&self) -> SocketAddr {
        let founder = self.cluster.iter().find(|m| m.id == self.node_id).map(|m| m.raft);
        founder.or(self.raft.advertised).unwrap_or(self.raft.listen)
    }

    /// The Kafka address clients are told to use.
    pub fn advertised(&self) -> (String, u16) {
        match &self.kafka.advertised {
            None => (self.kafka.listen.ip().to_string(), self.kafka.listen.port()),
            Some(text) => match text.rsplit_once(':') {
                Some((host, port)) => (host.to_string(), port.parse().unwrap_or(0)),
                None => (String::new(), 0),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        node_id = 2
        data_dir = "d"
        [kafka]
        listen = "127.0.0.1:9093"
        [raft]
        listen = "127.0.0.1:19093"
        [[cluster]]
        id = 1
        raft = "127.0.0.1:19092"
        [[cluster]]
        id = 2
        raft = "127.0.0.1:19093"
    "#;

    #[test]
    fn a_minimal_config_gets_kafka_like_defaults() {
        let config: BrokerConfig = toml::from_str(EXAMPLE).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.advertised(), ("127.0.0.1".to_string(), 9093));
        assert_eq!((config.raft.tick_ms, config.raft.election_ticks), (100, 10));
        assert_eq!(config.logging.format, LogFormat::Text);
        assert_eq!(config.groups.offsets_partitions, 8);
    }

    #[test]
    fn a_broker_not_among_the_founders_joins() {
        let config: BrokerConfig = toml::from_str(EXAMPLE).expect("parses");
        assert!(!config.is_joiner());
        let joiner = EXAMPLE.replace("node_id = 2", "node_id = 3");
        let config: BrokerConfig = toml::from_str(&joiner).expect("parses");
        config.validate().expect("a joiner is valid");
        assert!(config.is_joiner());
        assert_eq!(config.raft_address(), "127.0.0.1:19093".parse().unwrap(), "its listen address");
        let anywhere = joiner.replace("listen = \"127.0.0.1:19093\"", "listen = \"0.0.0.0:19093\"");
        let config: BrokerConfig = toml::from_str(&anywhere).expect("parses");
        assert!(config.validate().unwrap_err().to_string().contains("raft.advertised"));
        let advertised = anywhere.replace("[raft]", "[raft]\nadvertised = \"10.0.0.3:19093\"");
        let config: BrokerConfig = toml::from_str(&advertised).expect("parses");
        config.validate().expect("advertised");
        assert_eq!(config.raft_address(), "10.0.0.3:19093".parse().unwrap());
    }

    #[test]
    fn mistakes_are_named() {
        let no_offsets: BrokerConfig =
            toml::from_str(&format!("{EXAMPLE}\n[groups]\noffsets_partitions = 0\n")).expect("parses");
        assert!(no_offsets.validate().unwrap_err().to_string().contains("offsets_partitions"));
        let typo = EXAMPLE.replace("data_dir", "datadir");
        assert!(toml::from_str::<BrokerConfig>(&typo).unwrap_err().to_string().contains("datadir"));
    }
}
