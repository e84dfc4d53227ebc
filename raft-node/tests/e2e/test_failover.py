"""Failover and restarts with real processes: no acknowledged message is lost
when a partition leader is SIGKILLed mid-produce, or when the whole cluster is
killed and restarted; a killed broker catches up to the same log."""

import filecmp
import signal

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cluster import wait_until
from conftest import create_topic


def produce(bootstrap, topic, values, midway=None):
    """Produces `values` with acks=all and retries; returns (acked, failed) value
    sets. `midway` = (n, action): after n values, wait for their acks, then act
    while the rest are produced."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, "message.timeout.ms": 60_000,
         "retry.backoff.ms": 50}
    )
    acked, failed = set(), set()

    def on_delivery(err, msg):
        (failed if err else acked).add(msg.value())

    for n, value in enumerate(values):
        if midway and n == midway[0]:
            assert producer.flush(60) == 0
            midway[1]()
        while True:
            try:
                producer.produce(topic, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(90) == 0
    return acked, failed


def read_all(bootstrap, topic, partitions):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    # Read up to each partition's high watermark.
    ends = {}
    for p in range(partitions):
        watermarks = lambda: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=2)  # noqa: E731
        ends[p] = wait_until(f"high watermark of {p}", watermarks)[1]
    positions = {p: 0 for p in range(partitions)}
    values = []
    while any(positions[p] < ends[p] for p in ends):
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        values.append(msg.value())
        positions[msg.partition()] = msg.offset() + 1
    consumer.close()
    return values


def leader_of(bootstrap, topic, partition):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(topic=topic, timeout=5).topics[topic].partitions[partition].leader


def test_leader_killed_mid_produce_loses_no_acknowledged_message(cluster):
    topic = "failover"
    create_topic(cluster, topic)
    values = [f"v-{i}".encode() for i in range(20_000)]
    victim = leader_of(cluster.bootstrap, topic, 0)
    acked, failed = produce(cluster.bootstrap, topic, values, midway=(5_000, lambda: cluster.kill(victim)))
    assert len(acked) > 5_000, "produce went on after the kill"
    wait_until("a new leader of partition 0", lambda: leader_of(cluster.bootstrap, topic, 0) not in (-1, victim))
    read = read_all(cluster.bootstrap, topic, 3)
    missing = acked - set(read)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
    assert len(acked) + len(failed) == len(values)

    # The killed broker comes back and catches up to the same log.
    cluster.start(victim)
    more, _ = produce(cluster.bootstrap, topic, [f"after-{i}".encode() for i in range(1_000)])
    assert len(more) == 1_000
    wait_until("all brokers back", lambda: len(AdminClient({"bootstrap.servers": cluster.bootstrap})
                                                .list_topics(timeout=2).brokers) == 3)

    # Partition logs are the `p-<topic>-<partition>.<first index>.log` segments;
    # once the victim has caught up, every broker's are the same size.
    def log_sizes(i):
        return {f.name: f.stat().st_size for f in (cluster.root / f"data-{i}").glob("p-*.log")}

    wait_until("the victim caught up", lambda: all(log_sizes(i) == log_sizes(victim) for i in cluster.ids),
               cluster=cluster)
    cluster.stop_all()
    victim_dir = cluster.root / f"data-{victim}"
    logs = sorted(f.name for f in victim_dir.glob("p-*.log"))
    assert logs, "the victim hosts the topic's partitions"
    for other in cluster.ids:
        if other != victim:
            match, mismatch, errors = filecmp.cmpfiles(victim_dir, cluster.root / f"data-{other}", logs, shallow=False)
            assert not mismatch and not errors, f"broker {victim}'s logs differ from {other}'s: {mismatch + errors}"


def test_whole_cluster_killed_and_restarted_loses_no_acknowledged_message(cluster):
    topic = "restart"
    create_topic(cluster, topic)
    acked, failed = produce(cluster.bootstrap, topic, [f"r-{i}".encode() for i in range(5_000)])
    assert not failed and len(acked) == 5_000
    for i in list(cluster.procs):
        cluster.kill(i, signal.SIGKILL)
    cluster.start_all()
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})

    def leaders():
        parts = admin.list_topics(topic=topic, timeout=2).topics[topic].partitions.values()
        return all(p.leader >= 0 for p in parts)

    wait_until("leaders after restart", leaders, cluster=cluster)
    read = read_all(cluster.bootstrap, topic, 3)
    assert acked <= set(read), f"{len(acked - set(read))} acknowledged messages lost"
