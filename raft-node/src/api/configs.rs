//! DescribeConfigs: every topic config Keel supports, with its value and
//! where the value comes from; for brokers, the move throttle
//! (`broker_configs`).

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use log_core::metadata::{
    TopicConfig, CLEANUP_POLICY, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_RETENTION_BYTES, DEFAULT_RETENTION_MS,
    DEFAULT_SEGMENT_BYTES, MAX_MESSAGE_BYTES, RETENTION_BYTES, RETENTION_MS, SEGMENT_BYTES,
};
use log_core::ErrorCode;

use super::{str_bytes, KafkaApi};

use crate::kafka::config_codes::{
    RESOURCE_BROKER, RESOURCE_TOPIC, SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC, TYPE_INT, TYPE_LIST, TYPE_LONG,
};

/// One supported topic config: key, type, default and a line of documentation.
struct Key {
    name: &'static str,
    config_type: i8,
    default: fn() -> String,
    doc: &'static str,
}

/// Every key `TopicConfig` accepts, in the order Kafka lists them (by name).
const KEYS: &[Key] = &[
    Key {
        name: CLEANUP_POLICY,
        config_type: TYPE_LIST,
        default: || "delete".into(),
        doc: "How old segments are discarded; Keel supports only delete.",
    },
    Key {
        name: MAX_MESSAGE_BYTES,
        config_type: TYPE_INT,
        default: || DEFAULT_MAX_MESSAGE_BYTES.to_string(),
        doc: "The largest record batch the topic accepts.",
    },
    Key {
        name: RETENTION_BYTES,
        config_type: TYPE_LONG,
        default: || DEFAULT_RETENTION_BYTES.to_string(),
        doc: "The most bytes a partition keeps before old segments are deleted; -1 is unlimited.",
    },
    Key {
        name: RETENTION_MS,
        config_type: TYPE_LONG,
        default: || DEFAULT_RETENTION_MS.to_string(),
        doc: "How long a segment is kept before deletion; -1 is unlimited.",
    },
    Key {
        name: SEGMENT_BYTES,
        config_type: TYPE_INT,
        default: || DEFAULT_SEGMENT_BYTES.to_string(),
        doc: "The size at which a partition's log rolls to a new segment.",
    },
];

impl KafkaApi {
    pub fn describe_configs(&self, request: &DescribeConfigsRequest) -> DescribeConfigsResponse {
        let view = self.view();
        let results = request
            .resources
            .iter()
            .map(|resource| {
                let result = DescribeConfigsResult::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name.clone());
                match resource.resource_type {
                    RESOURCE_TOPIC => match view.metadata.topic(&resource.resource_name) {
                        Some(topic) => result.with_configs(topic_configs(topic.config(), resource, request)),
                        None => result.with_error_code(ErrorCode::UnknownTopicOrPartition.code()).with_error_message(
                            Some(str_bytes(&format!("topic {} does not exist", &*resource.resource_name))),
                        ),
                    },
                    RESOURCE_BROKER => match self.broker_configs(&resource.resource_name) {
                        Ok(configs) => result.with_configs(configs),
                        Err((code, message)) => {
                            result.with_error_code(code.code()).with_error_message(Some(str_bytes(&message)))
                        }
                    },
                    other => result
                        .with_error_code(ErrorCode::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(&format!("resource type {other} is not supported")))),
                }
            })
            .collect();
        DescribeConfigsResponse::default().with_results(results)
    }
}

/// The topic's configs, restricted to the requested keys when some are named.
fn topic_configs(
    config: &TopicConfig,
    resource: &DescribeConfigsResource,
    request: &DescribeConfigsRequest,
) -> Vec<DescribeConfigsResourceResult> {
    let wanted = |name: &str| resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| &**k == name));
    KEYS.iter()
        .filter(|key| wanted(key.name))
        .map(|key| {
            let default = (key.default)();
            let (value, source) = match config.entries().get(key.name) {
                Some(value) => (value.clone(), SOURCE_DYNAMIC_TOPIC),
                None => (default.clone(), SOURCE_DEFAULT),
            };
            let synonyms = if !request.include_synonyms {
                Vec::new()
            } else if source == SOURCE_DEFAULT {
                vec![synonym(key.name, &value, source)]
            } else {
                // Kafka lists the effective value first, then what it overrides.
                vec![synonym(key.name, &value, source), synonym(key.name, &default, SOURCE_DEFAULT)]
            };
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(key.name))
                .with_value(Some(str_bytes(&value)))
                .with_config_source(source)
                .with_read_only(false)
                .with_is_sensitive(false)
                .with_synonyms(synonyms)
                .with_config_type(key.config_type)
                .with_documentation(request.include_documentation.then(|| str_bytes(key.doc)))
        })
        .collect()
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default().with_name(str_bytes(name)).with_value(Some(str_bytes(value))).with_source(source)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn every_default_is_accepted_and_equals_the_typed_default() {
        let default = TopicConfig::default();
        for key in KEYS {
            let entries = BTreeMap::from([(key.name.to_string(), (key.default)())]);
            let config = TopicConfig::new(entries).expect(key.name);
            assert_eq!(
                (config.retention_ms(), config.retention_bytes(), config.segment_bytes(), config.max_message_bytes()),
                (
                    default.retention_ms(),
                    default.retention_bytes(),
                    default.segment_bytes(),
                    default.max_message_bytes()
                ),
                "{}",
                key.name
            );
        }
    }

    fn describe(config: &TopicConfig, keys: Option<&[&str]>) -> Vec<(String, String, i8)> {
        let resource = DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_configuration_keys(keys.map(|keys| keys.iter().map(|k| str_bytes(k)).collect()));
        topic_configs(config, &resource, &DescribeConfigsRequest::default())
            .into_iter()
            .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string()).unwrap_or_default(), c.config_source))
            .collect()
    }

    #[test]
    fn explicit_values_are_dynamic_the_rest_defaults() {
        let config = TopicConfig::new(BTreeMap::from([(RETENTION_MS.to_string(), "1000".to_string())])).unwrap();
        let described = describe(&config, None);
        assert_eq!(described.len(), KEYS.len());
        for (name, value, source) in described {
            if name == RETENTION_MS {
                assert_eq!((value.as_str(), source), ("1000", SOURCE_DYNAMIC_TOPIC));
            } else {
                assert_eq!(source, SOURCE_DEFAULT, "{name}");
            }
        }
    }

    #[test]
    fn configuration_keys_filter_and_unknown_keys_are_omitted() {
        let described = describe(&TopicConfig::default(), Some(&[SEGMENT_BYTES, "no.such.key"]));
        assert_eq!(described, vec![(SEGMENT_BYTES.to_string(), DEFAULT_SEGMENT_BYTES.to_string(), SOURCE_DEFAULT)]);
        assert!(describe(&TopicConfig::default(), Some(&[])).is_empty());
    }
}
