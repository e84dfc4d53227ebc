//! Topic configs: the known keys, their validation and Kafka's defaults.
//!
//! A `TopicConfig` exists only validated: it keeps the entries as the creator
//! gave them (what DescribeConfigs shows) next to their typed values, and it
//! (de)serializes as the plain map, re-validating on the way in.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const RETENTION_MS: &str = "retention.ms";
pub const RETENTION_BYTES: &str = "retention.bytes";
pub const SEGMENT_BYTES: &str = "segment.bytes";
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
pub const CLEANUP_POLICY: &str = "cleanup.policy";

/// 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 604_800_000;
/// Unlimited.
pub const DEFAULT_RETENTION_BYTES: i64 = -1;
/// 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: i32 = 1_073_741_824;
/// 1 MiB plus the record batch overhead.
pub const DEFAULT_MAX_MESSAGE_BYTES: i32 = 1_048_588;

/// Kafka's smallest `segment.bytes` (3.x: `LegacyRecord.RECORD_OVERHEAD_V0`).
const MIN_SEGMENT_BYTES: i32 = 14;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config {0:?}")]
    UnknownKey(String),
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue { key: String, value: String, reason: String },
}

/// A topic's validated config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    entries: BTreeMap<String, String>,
    retention_ms: i64,
    retention_bytes: i64,
    segment_bytes: i32,
    max_message_bytes: i32,
}

impl TopicConfig {
    /// Validates `entries`: only the known keys, each with a valid value.
    pub fn new(entries: BTreeMap<String, String>) -> Result<TopicConfig, ConfigError> {
        let mut config = TopicConfig::default();
        for (key, value) in &entries {
            match key.as_str() {
                RETENTION_MS => config.retention_ms = at_least(key, value, -1)?,
                RETENTION_BYTES => config.retention_bytes = at_least(key, value, -1)?,
                SEGMENT_BYTES => config.segment_bytes = at_least(key, value, MIN_SEGMENT_BYTES)?,
                MAX_MESSAGE_BYTES => config.max_message_bytes = at_least(key, value, 0)?,
                // Kafka's list syntax; Keel has no compaction, so "delete" is the only policy.
                CLEANUP_POLICY => {
                    if !value.split(',').all(|policy| policy.trim() == "delete") {
                        return Err(invalid(key, value, "only \"delete\" is supported".into()));
                    }
                }
                _ => return Err(ConfigError::UnknownKey(key.clone())),
            }
        }
        config.entries = entries;
        Ok(config)
    }

    /// The entries as the topic's creator set them; absent keys take the defaults.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    /// `retention.ms`; -1 is unlimited.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// `retention.bytes`; -1 is unlimited.
    pub fn retention_bytes(&self) -> i64 {
        self.retention_bytes
    }

    pub fn segment_bytes(&self) -> i32 {
        self.segment_bytes
    }

    pub fn max_message_bytes(&self) -> i32 {
        self.max_message_bytes
    }
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            entries: BTreeMap::new(),
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: DEFAULT_RETENTION_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

/// Parses a number as Kafka does (surrounding whitespace allowed) and checks its lower bound.
fn at_least<T: FromStr + PartialOrd + Display>(key: &str, value: &str, min: T) -> Result<T, ConfigError> {
    let parsed: T = value.trim().parse().map_err(|_| invalid(key, value, "not a number in range".into()))?;
    if parsed < min {
        return Err(invalid(key, value, format!("less than {min}")));
    }
    Ok(parsed)
}

fn invalid(key: &str, value: &str, reason: String) -> ConfigError {
    ConfigError::InvalidValue { key: key.to_owned(), value: value.to_owned(), reason }
}

impl Serialize for TopicConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TopicConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = BTreeMap::<String, String>::deserialize(deserializer)?;
        TopicConfig::new(entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<TopicConfig, ConfigError> {
        TopicConfig::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = config(&[]).unwrap();
        assert_eq!(c, TopicConfig::default());
        assert_eq!(c.retention_ms(), 7 * 24 * 3600 * 1000);
        assert_eq!(c.retention_bytes(), -1);
        assert_eq!(c.segment_bytes(), 1 << 30);
        assert_eq!(c.max_message_bytes(), 1_048_588);
    }

    #[test]
    fn known_keys_parse() {
        let c = config(&[
            ("retention.ms", "-1"),
            ("retention.bytes", " 1000 "),
            ("segment.bytes", "14"),
            ("max.message.bytes", "0"),
            ("cleanup.policy", "delete"),
        ])
        .unwrap();
        assert_eq!(
            (c.retention_ms(), c.retention_bytes(), c.segment_bytes(), c.max_message_bytes()),
            (-1, 1000, 14, 0)
        );
        assert_eq!(c.entries().len(), 5);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_rejected() {
        for bad in [
            ("retention.ms", "-2"),
            ("retention.ms", "7d"),
            ("retention.bytes", ""),
            ("segment.bytes", "13"),
            ("segment.bytes", "2147483648"),
            ("max.message.bytes", "-1"),
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "delete,compact"),
            ("cleanup.policy", ""),
        ] {
            assert!(matches!(config(&[bad]), Err(ConfigError::InvalidValue { .. })), "{bad:?}");
        }
        assert_eq!(config(&[("min.insync.replicas", "2")]), Err(ConfigError::UnknownKey("min.insync.replicas".into())));
    }

    #[test]
    fn deserializing_revalidates() {
        let json = serde_json::to_string(&config(&[("retention.ms", "5")]).unwrap()).unwrap();
        assert_eq!(json, r#"{"retention.ms":"5"}"#);
        assert_eq!(serde_json::from_str::<TopicConfig>(&json).unwrap().retention_ms(), 5);
        assert!(serde_json::from_str::<TopicConfig>(r#"{"retention.ms":"x"}"#).is_err());
    }
}
