//! Broker configs that change at run time, set with IncrementalAlterConfigs
//! through the metadata group, as `kafka-configs --entity-type brokers`
//! does: the move throttle, Kafka's `leader.replication.throttled.rate`,
//! for one broker (resource name: its id) or for every broker (the default
//! entity, name ""), and Keel's `keel.broker.draining` mark, for one broker
//! only. DescribeConfigs shows them.

use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use log_core::metadata::{BrokerId, ClusterMetadata, Command, MoveThrottles, BROKER_DRAINING, LEADER_THROTTLED_RATE};
use log_core::ErrorCode;

use super::topics::{deadline, Refusal};
use super::{str_bytes, KafkaApi};
use crate::kafka::config_codes::{
    OP_DELETE, OP_SET, RESOURCE_BROKER, RESOURCE_TOPIC, SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER,
    SOURCE_STATIC_BROKER, TYPE_BOOLEAN, TYPE_LONG,
};

/// The request has no timeout of its own: as long as a metadata change may take.
const ALTER_TIMEOUT_MS: i32 = 30_000;

/// A change one resource of the request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Whose throttle (`None`: every broker's default) and its new rate
    /// (`None`: cleared).
    Throttle(Option<BrokerId>, Option<u64>),
    /// A broker marked draining (`true`) or no longer.
    Draining(BrokerId, bool),
}

/// The changes `resource` asks for, in order; all refused if one is.
fn changes(resource: &AlterConfigsResource) -> Result<Vec<Change>, Refusal> {
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
    let configs = resource.configs.iter();
    configs.map(|c| change(broker, &c.name, c.config_operation, c.value.as_deref())).collect()
}

/// The change of config `name` of `broker` (`None`: the default entity).
fn change(broker: Option<BrokerId>, name: &str, operation: i8, value: Option<&str>) -> Result<Change, Refusal> {
    match name {
        LEADER_THROTTLED_RATE => Ok(Change::Throttle(broker, rate(operation, value)?)),
        BROKER_DRAINING => {
            let broker = broker.ok_or_else(|| {
                (ErrorCode::InvalidRequest, format!("{BROKER_DRAINING} marks one broker: name it by its id"))
            })?;
            Ok(Change::Draining(broker, draining(operation, value)?))
        }
        other => Err((
            ErrorCode::InvalidConfig,
            format!(
                "broker config {other} cannot change at run time (only {LEADER_THROTTLED_RATE} and {BROKER_DRAINING})"
            ),
        )),
    }
}

/// The move throttle an operation sets: bytes per second, `None` cleared.
fn rate(operation: i8, value: Option<&str>) -> Result<Option<u64>, Refusal> {
    match (operation, value) {
        (OP_SET, Some(value)) => value.trim().parse::<u64>().map(Some).map_err(|_| {
            let message = format!("{LEADER_THROTTLED_RATE} must be bytes per second (0: no limit), got {value:?}");
            (ErrorCode::InvalidConfig, message)
        }),
        (OP_SET, None) => Err((ErrorCode::InvalidRequest, format!("{LEADER_THROTTLED_RATE}: SET without a value"))),
        (OP_DELETE, _) => Ok(None),
        (op, _) => {
            Err((ErrorCode::InvalidRequest, format!("operation {op} does not apply to {LEADER_THROTTLED_RATE}")))
        }
    }
}

/// The draining mark an operation sets; deleting it is `false`.
fn draining(operation: i8, value: Option<&str>) -> Result<bool, Refusal> {
    match (operation, value.map(str::trim)) {
        (OP_SET, Some(v)) if v.eq_ignore_ascii_case("true") => Ok(true),
        (OP_SET, Some(v)) if v.eq_ignore_ascii_case("false") => Ok(false),
        (OP_SET, Some(v)) => {
            Err((ErrorCode::InvalidConfig, format!("{BROKER_DRAINING} must be true or false, got {v:?}")))
        }
        (OP_SET, None) => Err((ErrorCode::InvalidRequest, format!("{BROKER_DRAINING}: SET without a value"))),
        (OP_DELETE, _) => Ok(false),
        (op, _) => Err((ErrorCode::InvalidRequest, format!("operation {op} does not apply to {BROKER_DRAINING}"))),
    }
}

/// Whether `metadata` shows `change` made.
fn made(metadata: &ClusterMetadata, change: Change) -> bool {
    match change {
        Change::Throttle(broker, bytes_per_sec) => {
            let throttles = metadata.move_throttles();
            let now = match broker {
                Some(b) => throttles.brokers.get(&b).copied(),
                None => throttles.default,
            };
            now == bytes_per_sec
        }
        Change::Draining(broker, draining) => metadata.draining().contains(&broker) == draining,
    }
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
            let result = match changes(resource) {
                Ok(changes) if !request.validate_only => self.make(changes).await,
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

    /// Makes `changes` one after the other, up to the first refused.
    async fn make(&self, changes: Vec<Change>) -> Result<(), Refusal> {
        for change in changes {
            let command = match change {
                Change::Throttle(broker, bytes_per_sec) => Command::SetMoveThrottle { broker, bytes_per_sec },
                Change::Draining(broker, draining) => Command::SetDraining { broker, draining },
            };
            // The machine is pure: its verdict on a copy is the group's.
            self.view().metadata.as_ref().clone().apply(command.clone()).map_err(|e| (e.code(), e.to_string()))?;
            let effect = |m: &ClusterMetadata| made(m, change).then_some(Ok(()));
            self.propose_and_wait(command, deadline(ALTER_TIMEOUT_MS), effect).await?;
        }
        Ok(())
    }

    /// The broker configs DescribeConfigs lists for resource `name` (a
    /// broker id, or "" for the default entity): the move throttle, where
    /// set, and for this broker also its `[moves]` value; the draining mark
    /// of a draining broker.
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
        let throttle = value.map(|(rate, source)| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(LEADER_THROTTLED_RATE))
                .with_value(Some(str_bytes(&rate.to_string())))
                .with_config_source(source)
                .with_config_type(TYPE_LONG)
                .with_documentation(Some(str_bytes(
                    "Bytes per second the broker sends to replicas a move adds; 0: no limit.",
                )))
        });
        let draining = broker.filter(|b| view.metadata.draining().contains(b)).map(|_| {
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(BROKER_DRAINING))
                .with_value(Some(str_bytes("true")))
                .with_config_source(SOURCE_DYNAMIC_BROKER)
                .with_config_type(TYPE_BOOLEAN)
                .with_documentation(Some(str_bytes(
                    "Being emptied for removal: no replica is placed on it, rebalances move its replicas off.",
                )))
        });
        Ok(throttle.into_iter().chain(draining).collect())
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

    fn code(result: Result<Vec<Change>, Refusal>) -> Option<ErrorCode> {
        result.err().map(|(code, _)| code)
    }

    #[test]
    fn the_throttle_is_set_and_cleared_per_broker_or_for_all() {
        let set = resource(RESOURCE_BROKER, "", &[(LEADER_THROTTLED_RATE, OP_SET, Some("1048576"))]);
        assert_eq!(changes(&set), Ok(vec![Change::Throttle(None, Some(1 << 20))]));
        let delete = resource(RESOURCE_BROKER, "3", &[(LEADER_THROTTLED_RATE, OP_DELETE, None)]);
        assert_eq!(changes(&delete), Ok(vec![Change::Throttle(Some(3), None)]));
        assert_eq!(changes(&resource(RESOURCE_BROKER, "3", &[])), Ok(vec![]));
    }

    #[test]
    fn one_broker_is_marked_draining_and_unmarked() {
        let mark = |op, value| resource(RESOURCE_BROKER, "4", &[(BROKER_DRAINING, op, value)]);
        assert_eq!(changes(&mark(OP_SET, Some("true"))), Ok(vec![Change::Draining(4, true)]));
        assert_eq!(changes(&mark(OP_SET, Some(" FALSE "))), Ok(vec![Change::Draining(4, false)]));
        assert_eq!(changes(&mark(OP_DELETE, None)), Ok(vec![Change::Draining(4, false)]));
        let both = resource(
            RESOURCE_BROKER,
            "4",
            &[(BROKER_DRAINING, OP_SET, Some("true")), (LEADER_THROTTLED_RATE, OP_SET, Some("5"))],
        );
        assert_eq!(changes(&both), Ok(vec![Change::Draining(4, true), Change::Throttle(Some(4), Some(5))]));
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
            (resource(RESOURCE_BROKER, "", &[(BROKER_DRAINING, OP_SET, Some("true"))]), ErrorCode::InvalidRequest),
            (resource(RESOURCE_BROKER, "4", &[(BROKER_DRAINING, OP_SET, Some("yes"))]), ErrorCode::InvalidConfig),
            (resource(RESOURCE_BROKER, "4", &[(BROKER_DRAINING, OP_SET, None)]), ErrorCode::InvalidRequest),
            (resource(RESOURCE_BROKER, "4", &[(BROKER_DRAINING, 2, Some("true"))]), ErrorCode::InvalidRequest),
            (
                resource(
                    RESOURCE_BROKER,
                    "4",
                    &[(BROKER_DRAINING, OP_SET, Some("true")), (LEADER_THROTTLED_RATE, OP_SET, Some("x"))],
                ),
                ErrorCode::InvalidConfig,
            ),
        ];
        for (resource, expected) in cases {
            assert_eq!(code(changes(&resource)), Some(expected), "{resource:?}");
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
