"""Retention against a three-broker Keel cluster: a topic with small
`segment.bytes` and `retention.bytes` loses its oldest segments, the earliest
offset (ListOffsets) moves forward, and what remains reads back as produced."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from cluster import wait_until
from conftest import running_cluster

COUNT = 400
RETENTION_BYTES = 4000


@pytest.fixture
def cluster(tmp_path):
    # Retention passes every 200 ms instead of every 10 s.
    yield from running_cluster(tmp_path, "[storage]\nretention_check_ms = 200\n")


def value(i):
    return f"value-{i}-".encode().ljust(100, b".")


def test_retention_bytes_moves_the_log_start(cluster):
    topic = "retained"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    config = {"retention.bytes": str(RETENTION_BYTES), "segment.bytes": "1000"}
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3, config=config)])[topic].result(
        timeout=30
    )
    wait_until(
        f"leader of {topic}",
        lambda: admin.list_topics(topic=topic, timeout=2).topics[topic].partitions[0].leader >= 0,
        cluster=cluster,
    )

    # One message per batch, so the log has many small segments.
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 0})
    acked = {}

    def on_delivery(err, msg):
        assert err is None, err
        acked[msg.offset()] = msg.value()

    for i in range(COUNT):
        producer.produce(topic, value=value(i), on_delivery=on_delivery)
        producer.flush(10)
    assert len(acked) == COUNT
    assert sorted(acked) == list(range(COUNT))

    # About retention.bytes of ~200-byte stored batches remain, plus up to a
    # segment: most of the log goes, and the last batches stay.
    retained = range(COUNT - 2 * RETENTION_BYTES // 100, COUNT - RETENTION_BYTES // 250)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    partition = TopicPartition(topic, 0)
    wait_until(
        "the earliest offset to move",
        lambda: consumer.get_watermark_offsets(partition, timeout=2)[0] in retained,
        cluster=cluster,
    )
    # Passes run every 200 ms on each replica: let the last ones finish.
    time.sleep(1.0)
    low, high = consumer.get_watermark_offsets(partition, timeout=2)
    assert low in retained and high == COUNT, (low, high)

    # Reading from the start gets exactly the retained messages, as produced.
    consumer.assign([TopicPartition(topic, 0, low)])
    got = []
    while len(got) < high - low:
        msg = consumer.poll(10.0)
        assert msg is not None, f"read {len(got)} of {high - low}"
        assert msg.error() is None, msg.error()
        got.append((msg.offset(), msg.value()))
    consumer.close()
    assert got == [(o, acked[o]) for o in range(low, high)]

    # Below the log start a fetch is OFFSET_OUT_OF_RANGE.
    strict = Consumer(
        {"bootstrap.servers": cluster.bootstrap, "group.id": "strict", "auto.offset.reset": "error"}
    )
    strict.assign([TopicPartition(topic, 0, low - 1)])
    msg = wait_until("an out-of-range error", lambda: strict.poll(1.0), cluster=cluster)
    strict.close()
    assert msg.error() is not None and msg.error().code() == KafkaError._AUTO_OFFSET_RESET, msg.error()
