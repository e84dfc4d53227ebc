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
//! tick_ms = 100                    # one raft tick
//! election_ticks = 10              # election timeout, in ticks (randomized up to 2x)
//! heartbeat_ticks = 2
//!
//! [[cluster]]                      # the brokers that form the cluster (metadata voters)
//! id = 1
//! raft = "127.0.0.1:19092"
//! # ... one entry per broker
//!
//! [leadership]
//! auto_rebalance = true            # hand leadership back to preferred replicas
//!                                  # (Kafka's auto.leader.rebalance.enable)
//! check_ms = 5000                  # how often each broker looks
//! max_transfers = 2                # hand-overs one broker runs at once
//!
//! [storage]
//! segment_bytes = 67108864         # segment roll size; a topic's segment.bytes overrides it
//! retention_check_ms = 10000       # how often topics' retention.ms/.bytes are applied
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
    pub storage: StorageSection,
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

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection { segment_bytes: default_segment_bytes(), retention_check_ms: default_retention_check_ms() }
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
fn default_segment_bytes() -> u64 {
    64 << 20
}
fn default_retention_check_ms() -> u64 {
    10_000
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
        if !ids.contains(&self.node_id) {
            return invalid(format!("node_id {} is not among the [[cluster]] members {ids:?}", self.node_id));
        }
        if self.raft.election_ticks <= self.raft.heartbeat_ticks || self.raft.tick_ms == 0 {
            return invalid("raft: election_ticks must exceed heartbeat_ticks, and tick_ms be positive".into());
        }
        let leadership = &self.leadership;
        if leadership.auto_rebalance && (leadership.check_ms == 0 || leadership.max_transfers == 0) {
            return invalid("leadership: check_ms and max_transfers must be positive with auto_rebalance".into());
        }
        let (host, port) = self.advertised();
        if host.is_empty() || port == 0 {
            return invalid(format!("kafka.advertised must be host:port, got {:?}", self.kafka.advertised));
        }
        Ok(())
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
    }

    #[test]
    fn mistakes_are_named() {
        let not_member = EXAMPLE.replace("node_id = 2", "node_id = 3");
        let config: BrokerConfig = toml::from_str(&not_member).expect("parses");
        assert!(config.validate().unwrap_err().to_string().contains("not among"));
        let typo = EXAMPLE.replace("data_dir", "datadir");
        assert!(toml::from_str::<BrokerConfig>(&typo).unwrap_err().to_string().contains("datadir"));
    }
}
