"""One member of a consumer group, run as its own process by test_groups.py so
that it can be killed (SIGKILL: gone without leaving the group) or stopped
(SIGTERM: commits, leaves the group and exits).

usage: group_worker.py confluent|kafka-python BOOTSTRAP GROUP TOPIC OUT

$ASSIGNOR picks the assignor (confluent: default cooperative-sticky;
kafka-python: range or roundrobin, default both). confluent only:
$GROUP_INSTANCE_ID makes a static member.

Writes JSON lines to OUT: {"assigned": [partitions]} whenever its assignment
changes, {"p", "o", "v"} for every message processed (before its offset is
committed: at least once), and {"closed": true} after a clean stop.
"""

import json
import os
import signal
import sys

client, bootstrap, group, topic, out_path = sys.argv[1:6]
stopping = False


def on_term(*_):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, on_term)
out = open(out_path, "a", buffering=1)
current = set()


def write(event):
    out.write(json.dumps(event) + "\n")


def assigned(partitions):
    current.update(partitions)
    write({"assigned": sorted(current)})


def revoked(partitions):
    current.difference_update(partitions)
    write({"assigned": sorted(current)})


def run_confluent():
    from confluent_kafka import Consumer

    static = {"group.instance.id": os.environ["GROUP_INSTANCE_ID"]} if "GROUP_INSTANCE_ID" in os.environ else {}
    consumer = Consumer(
        {
            **static,
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": f"worker-{out_path.rsplit('/', 1)[-1]}",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": os.environ.get("ASSIGNOR", "cooperative-sticky"),
            # Offsets are stored after processing and committed in the background.
            "enable.auto.offset.store": False,
            "auto.commit.interval.ms": 200,
        }
    )
    consumer.subscribe(
        [topic],
        on_assign=lambda _, ps: assigned(p.partition for p in ps),
        on_revoke=lambda _, ps: revoked(p.partition for p in ps),
        on_lost=lambda _, ps: revoked(p.partition for p in ps),
    )
    while not stopping:
        m = consumer.poll(0.2)
        if m is None or m.error():
            continue
        write({"p": m.partition(), "o": m.offset(), "v": m.value().decode()})
        consumer.store_offsets(m)
    consumer.close()


def run_kafka_python():
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.errors import CommitFailedError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked_partitions):
            revoked(tp.partition for tp in revoked_partitions)

        def on_partitions_assigned(self, assigned_partitions):
            assigned(tp.partition for tp in assigned_partitions)

    assignors = {"range": [RangePartitionAssignor], "roundrobin": [RoundRobinPartitionAssignor]}
    strategy = assignors.get(os.environ.get("ASSIGNOR"), [RangePartitionAssignor, RoundRobinPartitionAssignor])
    consumer = KafkaConsumer(
        partition_assignment_strategy=strategy,
        bootstrap_servers=bootstrap.split(","),
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    consumer.subscribe([topic], listener=Listener())
    while not stopping:
        batch = consumer.poll(timeout_ms=200)
        for messages in batch.values():
            for m in messages:
                write({"p": m.partition, "o": m.offset, "v": m.value.decode()})
        if batch:
            try:
                consumer.commit()
            except CommitFailedError:
                pass  # a rebalance took the partitions; their new owner reprocesses

    consumer.close()


{"confluent": run_confluent, "kafka-python": run_kafka_python}[client]()
write({"closed": True})
