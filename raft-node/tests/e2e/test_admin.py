"""DescribeConfigs and IncrementalAlterConfigs from unmodified admin clients:
every supported topic config with its value and source, key filtering,
unknown topics, and the brokers' move throttle set, shown and cleared."""

import subprocess

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewTopic
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

from cluster import KEEL, wait_until

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


THROTTLE = "leader.replication.throttled.rate"


def throttle_of(admin, broker):
    configs = describe(admin, ConfigResource(ConfigResource.Type.BROKER, str(broker)))
    return {name: (e.value, ConfigSource(e.source)) for name, e in configs.items()}


def alter(admin, name, op, value=None, kind=ConfigResource.Type.BROKER):
    key = THROTTLE if kind == ConfigResource.Type.BROKER else "retention.ms"
    resource = ConfigResource(kind, name, incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
    admin.incremental_alter_configs([resource])[resource].result(timeout=30)


def keel_throttle(cluster, *args):
    subprocess.run([KEEL, "cluster", "throttle", *args, "--bootstrap", cluster.bootstrap],
                   check=True, capture_output=True, timeout=60)


def test_the_move_throttle_is_set_for_all_or_one_broker_and_cleared(cluster, admin):
    """As `kafka-configs --entity-type brokers` does, for one broker; the
    default entity (every broker, a resource named "", which confluent-kafka
    refuses to send) through `keel cluster throttle`. The brokers' files
    say 50 MiB/s ([moves] throttle_bytes_per_sec)."""
    static = {THROTTLE: ("52428800", ConfigSource.STATIC_BROKER_CONFIG)}
    assert throttle_of(admin, 1) == static
    keel_throttle(cluster, "1048576")
    every = {THROTTLE: ("1048576", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG)}
    wait_until("broker 1 sees the default", lambda: throttle_of(admin, 1) == every, cluster=cluster)
    alter(admin, "2", AlterConfigOpType.SET, "0")
    own = {THROTTLE: ("0", ConfigSource.DYNAMIC_BROKER_CONFIG)}
    wait_until("broker 2 sees its own", lambda: throttle_of(admin, 2) == own, cluster=cluster)
    assert throttle_of(admin, 1) == every
    alter(admin, "2", AlterConfigOpType.DELETE)
    wait_until("broker 2 back to the default", lambda: throttle_of(admin, 2) == every, cluster=cluster)
    keel_throttle(cluster, "--clear")
    wait_until("both back to the file", lambda: throttle_of(admin, 1) == static == throttle_of(admin, 2),
               cluster=cluster)

    # (librdkafka sends a broker's configs to that broker, so an unknown id never leaves it.)
    with pytest.raises(KafkaException) as raised:
        alter(admin, "2", AlterConfigOpType.SET, "fast")
    assert raised.value.args[0].code() == 40  # INVALID_CONFIG
    with pytest.raises(KafkaException) as raised:
        alter(admin, "anything", AlterConfigOpType.SET, "1", kind=ConfigResource.Type.TOPIC)
    assert raised.value.args[0].code() == 42  # INVALID_REQUEST: topic configs are fixed at creation
