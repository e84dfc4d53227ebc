"""The idempotent producer: InitProducerId hands out ids unique across brokers
and restarts; and through leader failover, confluent-kafka with
enable.idempotence=true produces unique values while the partition's leader is
killed (and restarted) three times; the history of sends and of a final read
is judged by the jepsen-style checker in idempotent mode: no duplicate, no lost
or unseen acknowledged write."""

import json
import os
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from cluster import KEEL, wait_until
from conftest import create_topic
from test_failover import leader_of

JEPSEN = os.environ.get("KEEL_JEPSEN_BIN", str(Path(KEEL).with_name("keel-jepsen")))
TOPIC = "idempotent"
KILLS = 3
# Acknowledgements to wait for before each kill, so every kill lands mid-produce.
ACKS_BETWEEN_KILLS = 500
# Messages queued in the client at most; the rest wait for deliveries.
IN_FLIGHT = 2_000


class History:
    """Events in the checker's JSON-lines format. Every event is recorded on the
    test's thread (delivery callbacks run inside `poll`), so times never go back."""

    def __init__(self):
        self.events = []
        self.next_index = 0

    def invoke(self, f, process, value):
        index = self.next_index
        self.next_index += 1
        self.add(index, "invoke", f, process, value)
        return index

    def add(self, index, type_, f, process, value):
        self.events.append(
            {"index": index, "type": type_, "f": f, "process": process, "time": time.monotonic_ns(), "value": value}
        )

    def write(self, path):
        path.write_text("".join(json.dumps(e) + "\n" for e in self.events))


def send_value(value):
    return {"topic": TOPIC, "partition": 0, "key": None, "value": value}


def leader(cluster):
    """Partition 0's leader, if known (broker ids start at 1)."""
    broker = leader_of(cluster.bootstrap, TOPIC, 0)
    return broker if broker > 0 else None


def kill_leaders(cluster, acked, victims, errors):
    """Kills the leader of partition 0 `KILLS` times, each once enough new acks
    arrived, waiting for a new leader and restarting the victim each time."""
    try:
        for _ in range(KILLS):
            target = len(acked) + ACKS_BETWEEN_KILLS
            wait_until("acknowledgements before the kill", lambda: len(acked) >= target, cluster=cluster)
            victim = wait_until("a leader", lambda: leader(cluster))
            cluster.kill(victim)
            victims.append(victim)
            wait_until("a new leader", lambda: leader(cluster) not in (None, victim))
            cluster.start(victim)
        target = len(acked) + ACKS_BETWEEN_KILLS
        wait_until("acknowledgements after the last kill", lambda: len(acked) >= target, cluster=cluster)
    except Exception as e:  # re-raised on the test's thread
        errors.append(e)


def produce_through_kills(cluster, history):
    fatal, stats = [], []
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 2,
            "retry.backoff.ms": 50,
            "message.timeout.ms": 60_000,
            "error_cb": lambda err: fatal.append(err) if err.fatal() else None,
            "statistics.interval.ms": 100,
            "stats_cb": lambda s: stats.append(json.loads(s)),
        }
    )
    acked, victims, errors = [], [], []
    killer = threading.Thread(target=kill_leaders, args=(cluster, acked, victims, errors))

    def on_delivery(index, value):
        def done(err, msg):
            if err is None:
                history.add(index, "ok", "send", 1, {**send_value(value), "offset": msg.offset()})
                acked.append(value)
            else:
                # May or may not be written: the checker allows either, once.
                history.add(index, "info", "send", 1, send_value(value))

        return done

    killer.start()
    n = 0
    while killer.is_alive():
        value = f"v-{n}"
        n += 1
        index = history.invoke("send", 1, send_value(value))
        producer.produce(TOPIC, value=value.encode(), partition=0, on_delivery=on_delivery(index, value))
        producer.poll(0)
        while len(producer) >= IN_FLIGHT and killer.is_alive():
            producer.poll(0.05)
    killer.join()
    assert producer.flush(90) == 0, "deliveries still pending"
    assert not errors, errors
    assert not fatal, f"the idempotent producer failed fatally: {fatal}"
    assert len(victims) == KILLS
    # The client's own account: it ran with a producer id, and sent more
    # messages than it had (it resent the batches in flight when a leader died).
    stats.clear()

    def latest_stats():
        producer.poll(0.1)
        return stats[-1] if stats else None

    last = wait_until("client statistics after the flush", latest_stats)
    assert last["eos"]["idemp_state"] == "Assigned" and last["eos"]["producer_id"] >= 0, last["eos"]
    partition = last["topics"][TOPIC]["partitions"]["0"]
    assert partition["txmsgs"] > partition["msgs"], "no message was sent twice: the kills missed the produce"
    return n, acked


def read_back(cluster, history, last_acked_offset):
    """Reads partition 0 from offset 0 past the last acknowledged offset and up
    to the high watermark, recording the polls (process 2)."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": "unused", "enable.auto.commit": False})
    tp = [{"topic": TOPIC, "partition": 0}]
    index = history.invoke("assign", 2, tp)
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    history.add(index, "ok", "assign", 2, tp)
    end = wait_until("the high watermark", lambda: consumer.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=2))
    end = max(end[1], last_acked_offset + 1)
    position = 0
    deadline = time.monotonic() + 60
    while position < end:
        assert time.monotonic() < deadline, f"read stuck at offset {position} of {end}"
        index = history.invoke("poll", 2, None)
        messages = [m for m in consumer.consume(500, timeout=1.0) if not m.error()]
        records = [
            {"topic": TOPIC, "partition": 0, "offset": m.offset(), "key": None, "value": m.value().decode()}
            for m in messages
        ]
        history.add(index, "ok", "poll", 2, records)
        if messages:
            position = messages[-1].offset() + 1
    consumer.close()


def test_idempotent_producer_through_leader_kills_writes_each_value_once(cluster, tmp_path):
    create_topic(cluster, TOPIC, partitions=1)
    history = History()
    sent, acked = produce_through_kills(cluster, history)
    assert len(acked) > KILLS * ACKS_BETWEEN_KILLS
    offsets = [e["value"]["offset"] for e in history.events if e["f"] == "send" and e["type"] == "ok"]
    read_back(cluster, history, max(offsets))

    path = tmp_path / "history.jsonl"
    history.write(path)
    verdict = subprocess.run([JEPSEN, "check", str(path), "--idempotent"], capture_output=True, text=True)
    assert verdict.returncode == 0, f"{sent} sent, {len(acked)} acknowledged:\n{verdict.stdout}{verdict.stderr}"


INVALID_REQUEST = 42


def init_producer_id(port, producer_id=-1, epoch=-1):
    """InitProducerId v3 (flexible; KIP-360 fields) with a null transactional id,
    over a raw socket: (error code, producer id, epoch)."""
    header = struct.pack(">hhih", 22, 3, 1, -1) + b"\x00"  # no client id, no tagged fields
    body = b"\x00" + struct.pack(">iqh", 60_000, producer_id, epoch) + b"\x00"  # null id ... tagged fields
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(header + body)) + header + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = sock.recv(4096)
            assert chunk, "connection closed"
            data += chunk
    # size, correlation id, header tagged fields, throttle time, then the answer.
    _, _, _, _, error, pid, got_epoch = struct.unpack(">iibihqh", data[:25])
    return error, pid, got_epoch


def test_producer_ids_are_unique_across_brokers_and_restarts(cluster):
    def fresh_ids(broker, n):
        answers = [init_producer_id(cluster.kafka[broker]) for _ in range(n)]
        assert all(error == 0 and epoch == 0 for error, _, epoch in answers), answers
        return [pid for _, pid, _ in answers]

    ids = {broker: fresh_ids(broker, 3) for broker in cluster.ids}
    every = [pid for pids in ids.values() for pid in pids]
    assert len(set(every)) == len(every), ids
    # Each broker draws from its own block.
    blocks = {broker: {pid // 1000 for pid in pids} for broker, pids in ids.items()}
    assert all(len(b) == 1 for b in blocks.values()) and len(set.union(*blocks.values())) == 3, blocks

    # A re-initialisation that names its id and epoch gets the next epoch;
    # one naming an id never handed out is refused.
    pid = ids[1][0]
    assert init_producer_id(cluster.kafka[2], pid, 0) == (0, pid, 1)
    assert init_producer_id(cluster.kafka[2], 10**12, 0) == (INVALID_REQUEST, -1, -1)

    # A restarted broker takes a new block: the rest of its old one may have been handed out.
    cluster.kill(1)
    cluster.start(1)
    after = wait_until("an id from the restarted broker", lambda: fresh_ids(1, 1), cluster=cluster)[0]
    assert after not in every and after // 1000 not in set.union(*blocks.values()), (after, ids)
