//! Broker configs that change at run time: only the move throttle, Kafka's
//! `leader.replication.throttled.rate`, set with IncrementalAlterConfigs for
//! one broker (resource name: its id) or for every broker (the default
//! entity, name ""), through the metadata group, as `kafka-configs
//! --entity-type brokers` does. DescribeConfigs shows it.

use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use log_core::metadata::{BrokerId, Command, MoveThrottles, LEADER_THROTTLED_RATE};
use log_core::ErrorCode;

use super::configs::{RESOURCE_BROKER, RESOURCE_TOPIC, TYPE_LONG};
use super::topics::{deadline, Refusal};
use super::{str_bytes, KafkaApi};

/// Kafka's ConfigSource for broker configs.
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;

/// Kafka's AlterConfigOp.OpType.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// The request has no timeout of its own: as long as a metadata change may take.
const ALTER_TIMEOUT_MS: i32 = 30_000;

/// A change one resource of the request asks for: whose throttle (`None`:
/// every broker's default) and its new rate (`None`: cleared).
type ThrottleChange = (Option<BrokerId>, Option<u64>);

/// The change `resource` asks for; `Ok(None)` when it names no config.
fn throttle_change(resource: &AlterConfigsResource) -> Result<Option<ThrottleChange>, Refusal> {
    let invalid = |message: String| Err((ErrorCode::InvalidRequest, message));
    let broker = match resource.resource_type {
        RESOURCE_BROKER => match &*resource.resource_name {
            "" => None,
            id => match id.parse::<BrokerId>() {
                Ok(id) => Some(id),
                Err(_) => return invalid(format!("{id:?} is not a broker id (\"\" names every broker)")),
            },
        },
        RESOURCE_TOPIC => return invalid("topic configs cannot change after the topic is created".into()),
        other => return invalid(format!("resource type {other} has no configs to change")),
    };
    let mut change = None;
    for config in &resource.configs {
        if &*config.name != LEADER_THROTTLED_RATE {
            return Err((
                ErrorCode::InvalidConfig,
                format!("broker config {} cannot change at run time (only {LEADER_THROTTLED_RATE})", &*config.name),
            ));
        }
        let rate = match (config.config_operation, config.value.as_deref()) {
            (OP_SET, Some(value)) => match value.trim().parse::<u64>() {
                Ok(rate) => Some(rate),
                Err(_) => {
                    return Err((
                        ErrorCode::InvalidConfig,
                        format!("{LEADER_THROTTLED_RATE} must be bytes per second (0: no limit), got {value:?}"),
                    ))
                }
            },
            (OP_SET, None) => return invalid(format!("{LEADER_THROTTLED_RATE}: SET without a value")),
            (OP_DELETE, _) => None,
            (op, _) => return invalid(format!("operation {op} does not apply to {LEADER_THROTTLED_RATE}")),
        };
        change = Some((broker, rate));
    }
    Ok(change)
}

/// What `broker` (`None`: the default entity) is set to in `throttles`, and
/// where that comes from.
fn described(throttles: &MoveThrottles, broker: Option<BrokerId>) -> Option<(u64, i8)> {
    let own = broker.and_then(|b| throttles.brokers.get(&b)).map(|&rate| (rate, SOURCE_DYNAMIC_BROKER));
    own.or(throttles.default.map(|rate| (rate, SOURCE_DYNAMIC_DEFAULT_BROKER)))
}

impl KafkaApi {
    pub async fn incremental_alter_configs(
        &self,
        request: &IncrementalAlterConfigsRequest,
    ) -> IncrementalAlterConfigsResponse {
        let mut responses = Vec::with_capacity(request.resources.len());
        for resource in &request.resources {
            let result = match throttle_change(resource) {
                Ok(Some(change)) if !request.validate_only => self.set_throttle(change).await,
                Ok(_) => Ok(()),
                Err(refusal) => Err(refusal),
            };
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            responses.push(match result {
                Ok(()) => response,
                Err((code, message)) => {
                    response.with_error_code(code.code()).with_error_message(Some(str_bytes(&message)))
                }
            });
        }
        IncrementalAlterConfigsResponse::default().with_responses(responses)
    }

    async fn set_throttle(&self, (broker, bytes_per_sec): ThrottleChange) -> Result<(), Refusal> {
        let command = Command::SetMoveThrottle { broker, bytes_per_sec };
        // The machine is pure: its verdict on a copy is the group's.
        self.view().metadata.as_ref().clone().apply(command.clone()).map_err(|e| (e.code(), e.to_string()))?;
        let effect = |m: &log_core::metadata::ClusterMetadata| {
            let throttles = m.move_throttles();
            let now = match broker {
                Some(b) => throttles.brokers.get(&b).copied(),
                None => throttles.default,
            };
            (now == bytes_per_sec).then_some(Ok(()))
        };
        self.propose_and_wait(command, deadline(ALTER_TIMEOUT_MS), effect).await
    }

    /// The broker configs DescribeConfigs lists for resource `name` (a
    /// broker id, or "" for the default entity): the move throttle, where
    /// set, and for this broker also its `[moves]` value.
    pub(super) fn broker_configs(&self, name: &str) -> Result<Vec<DescribeConfigsResourceResult>, Refusal> {
        let broker = match name {
            "" => None,
            id => Some(id.parse::<BrokerId>().map_err(|_| {
                (ErrorCode::InvalidRequest, format!("{id:?} is not a broker id (\"\" names every broker)"))
            })?),
        };
        let view = self.view();
        let me = broker.filter(|&b| b as u64 == self.node.node_id);
        let value = described(view.metadata.move_throttles(), broker)
            .or(me.map(|_| (self.node.move_throttle, SOURCE_STATIC_BROKER)));
        Ok(value
            .map(|(rate, source)| {
                DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(LEADER_THROTTLED_RATE))
                    .with_value(Some(str_bytes(&rate.to_string())))
                    .with_config_source(source)
                    .with_config_type(TYPE_LONG)
                    .with_documentation(Some(str_bytes(
                        "Bytes per second the broker sends to replicas a move adds; 0: no limit.",
                    )))
            })
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;

    use super::*;

    fn resource(kind: i8, name: &str, configs: &[(&str, i8, Option<&str>)]) -> AlterConfigsResource {
        AlterConfigsResource::default().with_resource_type(kind).with_resource_name(str_bytes(name)).with_configs(
            configs
                .iter()
                .map(|(key, op, value)| {
                    AlterableConfig::default()
                        .with_name(str_bytes(key))
                        .with_config_operation(*op)
                        .with_value(value.map(str_bytes))
                })
                .collect(),
        )
    }

    fn code(result: Result<Option<ThrottleChange>, Refusal>) -> Option<ErrorCode> {
        result.err().map(|(code, _)| code)
    }

    #[test]
    fn the_throttle_is_set_and_cleared_per_broker_or_for_all() {
        let set = resource(RESOURCE_BROKER, "", &[(LEADER_THROTTLED_RATE, OP_SET, Some("1048576"))]);
        assert_eq!(throttle_change(&set).ok().flatten(), Some((None, Some(1 << 20))));
        let delete = resource(RESOURCE_BROKER, "3", &[(LEADER_THROTTLED_RATE, OP_DELETE, None)]);
        assert_eq!(throttle_change(&delete).ok().flatten(), Some((Some(3), None)));
        assert_eq!(throttle_change(&resource(RESOURCE_BROKER, "3", &[])).ok().flatten(), None);
    }

    #[test]
    fn everything_else_is_refused_with_a_reason() {
        let cases = [
            (resource(RESOURCE_BROKER, "x", &[(LEADER_THROTTLED_RATE, OP_SET, Some("1"))]), ErrorCode::InvalidRequest),
            (resource(RESOURCE_BROKER, "", &[(LEADER_THROTTLED_RATE, OP_SET, Some("-1"))]), ErrorCode::InvalidConfig),
            (resource(RESOURCE_BROKER, "", &[(LEADER_THROTTLED_RATE, OP_SET, None)]), ErrorCode::InvalidRequest),
            (resource(RESOURCE_BROKER, "", &[(LEADER_THROTTLED_RATE, 2, Some("1"))]), ErrorCode::InvalidRequest),
            (resource(RESOURCE_BROKER, "", &[("log.retention.ms", OP_SET, Some("1"))]), ErrorCode::InvalidConfig),
            (resource(RESOURCE_TOPIC, "t", &[("retention.ms", OP_SET, Some("1"))]), ErrorCode::InvalidRequest),
            (resource(8, "x", &[]), ErrorCode::InvalidRequest),
        ];
        for (resource, expected) in cases {
            assert_eq!(code(throttle_change(&resource)), Some(expected), "{resource:?}");
        }
    }

    #[test]
    fn a_broker_s_own_rate_shows_before_the_default() {
        let mut throttles = MoveThrottles::default();
        assert_eq!(described(&throttles, Some(1)), None);
        throttles.default = Some(5);
        throttles.brokers.insert(2, 7);
        assert_eq!(described(&throttles, Some(1)), Some((5, SOURCE_DYNAMIC_DEFAULT_BROKER)));
        assert_eq!(described(&throttles, Some(2)), Some((7, SOURCE_DYNAMIC_BROKER)));
        assert_eq!(described(&throttles, None), Some((5, SOURCE_DYNAMIC_DEFAULT_BROKER)));
    }
}
