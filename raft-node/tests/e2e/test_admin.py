"""DescribeConfigs from unmodified admin clients: every supported topic config
with its value and source, key filtering, unknown topics, brokers."""

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, NewTopic
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

DEFAULTS = {
    "cleanup.policy": "delete",
    "max.message.bytes": "1048588",
    "retention.bytes": "-1",
    "retention.ms": "604800000",
    "segment.bytes": "1073741824",
}


@pytest.fixture
def admin(cluster):
    return AdminClient({"bootstrap.servers": cluster.bootstrap})


def create(admin, name, config=None):
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=3, config=config or {})])[name].result(
        timeout=30
    )


def describe(admin, resource):
    return admin.describe_configs([resource])[resource].result(timeout=30)


def test_topic_configs_with_values_and_sources(admin):
    create(admin, "configured", {"retention.ms": "3600000", "cleanup.policy": "delete"})
    configs = describe(admin, ConfigResource(ConfigResource.Type.TOPIC, "configured"))
    assert {name: e.value for name, e in configs.items()} == {**DEFAULTS, "retention.ms": "3600000"}
    explicit = {"retention.ms", "cleanup.policy"}
    for name, entry in configs.items():
        want = ConfigSource.DYNAMIC_TOPIC_CONFIG if name in explicit else ConfigSource.DEFAULT_CONFIG
        assert entry.source == want.value, name
        assert not entry.is_read_only and not entry.is_sensitive, name


def test_configuration_keys_filter(cluster, admin):
    # confluent-kafka always asks for every key; kafka-python sends the names.
    create(admin, "filtered", {"segment.bytes": "1048576"})
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    try:
        wanted = {"segment.bytes": None, "retention.bytes": None, "no.such.config": None}
        got = kp.describe_configs([KpConfigResource(ConfigResourceType.TOPIC, "filtered", configs=wanted)],
                                  config_filter="all")
        configs = got["topic"]["filtered"]
        assert {name: c["value"] for name, c in configs.items()} == {"segment.bytes": "1048576", "retention.bytes": "-1"}
        assert configs["segment.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert configs["retention.bytes"]["config_source"] == "DEFAULT_CONFIG"
    finally:
        kp.close()


def test_unknown_topic_is_unknown_topic_or_partition(admin):
    with pytest.raises(KafkaException) as raised:
        describe(admin, ConfigResource(ConfigResource.Type.TOPIC, "no-such-topic"))
    assert raised.value.args[0].code() == 3


def test_broker_has_no_configs_and_no_error(admin):
    assert describe(admin, ConfigResource(ConfigResource.Type.BROKER, "1")) == {}
