"""Unmodified Kafka clients against a three-broker Keel cluster: every message
produced with acks=all is read back, in order per partition, with its key,
value, headers and timestamp, with and without compression."""

import subprocess

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import create_topic

COUNT = 10_000
BASE_TS = 1_700_000_000_000
COMPRESSIONS = ["none", "gzip", "snappy", "lz4", "zstd"]


def expected_message(i):
    return (f"key-{i}".encode(), f"value-{i}".encode(), [("seq", str(i).encode())], BASE_TS + i)


def read_partitions(bootstrap, topic, partitions, expected_counts):
    """Reads each partition from its start until it has the expected count."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    idle = 0
    while sum(len(v) for v in got.values()) < sum(expected_counts.values()) and idle < 100:
        msg = consumer.poll(1.0)
        if msg is None:
            idle += 1
            continue
        assert msg.error() is None, msg.error()
        got[msg.partition()].append(
            (msg.offset(), msg.key(), msg.value(), msg.headers() or [], msg.timestamp()[1])
        )
    consumer.close()
    return got


def check_read_back(acked, got):
    """`acked`: partition -> [(offset, key, value, headers, ts)] from delivery reports."""
    for partition, messages in acked.items():
        want = sorted(messages)
        assert got[partition] == want, f"partition {partition}: read {len(got[partition])}, acked {len(want)}"


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_confluent_kafka_round_trip(cluster, compression):
    topic = f"confluent-{compression}"
    create_topic(cluster, topic)
    producer = Producer(
        {"bootstrap.servers": cluster.bootstrap, "acks": "all", "compression.type": compression, "linger.ms": 5}
    )
    acked = {}

    def on_delivery(err, msg):
        assert err is None, err
        # Delivery reports carry no headers: take them from what was sent.
        _, _, headers, _ = expected_message(int(msg.key().decode().removeprefix("key-")))
        acked.setdefault(msg.partition(), []).append(
            (msg.offset(), msg.key(), msg.value(), headers, msg.timestamp()[1])
        )

    for i in range(COUNT):
        key, value, headers, ts = expected_message(i)
        producer.produce(topic, key=key, value=value, headers=headers, timestamp=ts, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert sum(len(v) for v in acked.values()) == COUNT
    assert len(acked) == 3, "keys spread over all partitions"
    got = read_partitions(cluster.bootstrap, topic, 3, {p: len(v) for p, v in acked.items()})
    check_read_back(acked, got)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_kafka_python_round_trip(cluster, compression):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP

    topic = f"kafka-python-{compression}"
    create_topic(cluster, topic)
    # Idempotent, kafka-python 3's default: batches carry a producer id from InitProducerId.
    producer = KafkaProducer(
        bootstrap_servers=cluster.bootstrap, acks="all", linger_ms=5, enable_idempotence=True,
        compression_type=None if compression == "none" else compression,
    )
    futures = []
    for i in range(COUNT):
        key, value, headers, ts = expected_message(i)
        futures.append(producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=ts))
    producer.flush(60)
    acked = {}
    for i, f in enumerate(futures):
        meta = f.get(timeout=60)
        key, value, headers, ts = expected_message(i)
        acked.setdefault(meta.partition, []).append((meta.offset, key, value, headers, ts))
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap, enable_auto_commit=False, consumer_timeout_ms=10_000)
    consumer.assign([KTP(topic, p) for p in range(3)])
    consumer.seek_to_beginning()
    got = {p: [] for p in range(3)}
    for msg in consumer:
        got[msg.partition].append((msg.offset, msg.key, msg.value, list(msg.headers), msg.timestamp))
        if sum(len(v) for v in got.values()) == COUNT:
            break
    consumer.close()
    check_read_back(acked, got)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_kcat_round_trip(cluster, compression):
    topic = f"kcat-{compression}"
    create_topic(cluster, topic)
    lines = "".join(f"key-{i}:value-{i}\n" for i in range(COUNT))
    produce = ["kcat", "-P", "-b", cluster.bootstrap, "-t", topic, "-K:", "-H", "origin=kcat", "-X", "acks=all"]
    if compression != "none":
        produce += ["-z", compression]
    subprocess.run(produce, input=lines.encode(), check=True, timeout=120)
    fmt = "%p\t%o\t%k\t%s\t%h\n"
    out = subprocess.run(
        ["kcat", "-C", "-b", cluster.bootstrap, "-t", topic, "-o", "beginning", "-e", "-f", fmt],
        capture_output=True, check=True, timeout=120,
    ).stdout.decode()
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == COUNT
    seen = set()
    by_partition = {}
    for partition, offset, key, value, headers in rows:
        assert value == key.replace("key-", "value-") and headers == "origin=kcat"
        seen.add(key)
        by_partition.setdefault(partition, []).append(int(offset))
    assert seen == {f"key-{i}" for i in range(COUNT)}
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets))), "offsets dense and in order"
