"""Consumer groups with real clients. A group of worker processes
(group_worker.py) reads a 6-partition topic while members join, leave (clean
stop) and are killed (SIGKILL, no leave): every produced message is processed,
the partitions are re-spread over the live members after each change, and
after a full restart of the cluster the group's committed offsets are intact
and a new member resumes from them (reads only what came after). And `keel
group list|describe|reset-offsets` against a live and an empty group."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from cluster import KEEL, wait_until
from conftest import create_topic

PARTITIONS = 6
WORKER = str(Path(__file__).with_name("group_worker.py"))


class Workers:
    def __init__(self, cluster, root, client, group, topic, env=None):
        self.cluster, self.root, self.client, self.group, self.topic = cluster, Path(root), client, group, topic
        self.env, self.procs = env or {}, {}

    def start(self, name, env=None):
        out = self.root / f"{name}.jsonl"
        args = [sys.executable, WORKER, self.client, self.cluster.bootstrap, self.group, self.topic, str(out)]
        env = {**os.environ, **self.env, **(env or {})}
        self.procs[name] = subprocess.Popen(args, stderr=open(self.root / f"{name}.err", "a"), env=env)

    def kill(self, name):
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=10)

    def stop(self, name):
        proc = self.procs.pop(name)
        proc.terminate()
        assert proc.wait(timeout=30) == 0, (self.root / f"{name}.err").read_text()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)

    def events(self, name):
        path = self.root / f"{name}.jsonl"
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def processed(self, names):
        return {e["v"] for n in names for e in self.events(n) if "v" in e}

    def assignment(self, name):
        assigned = [e["assigned"] for e in self.events(name) if "assigned" in e]
        return assigned[-1] if assigned else []

    def spread_over(self, names):
        """Whether `names` (the live members) hold every partition exactly once, each some."""
        held = [self.assignment(n) for n in names]
        flat = sorted(p for ps in held for p in ps)
        return flat == list(range(PARTITIONS)) and all(held)


def produce(cluster, topic, values):
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i, v in enumerate(values):
        producer.produce(topic, value=v.encode(), partition=i % PARTITIONS)
    assert producer.flush(30) == 0


class Feed(threading.Thread):
    """Produces to every partition until stopped, so joins, leaves and kills
    land while messages flow; keeps the values the cluster acknowledged."""

    def __init__(self, cluster, topic):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5})
        self.topic, self.acked, self.stopping = topic, [], threading.Event()

    def run(self):
        i = 0
        while not self.stopping.is_set():
            for _ in range(PARTITIONS):
                self.producer.produce(self.topic, value=f"live-{i}".encode(), partition=i % PARTITIONS,
                                      on_delivery=self.delivered)
                i += 1
            # Paces the feed (a few hundred messages a second), not a synchronisation. A sleep,
            # since poll returns at the first delivery report: against a broker that answers
            # pipelined requests as they commit, poll(0.02) let the feed run at thousands a second.
            self.producer.poll(0)
            time.sleep(0.02)
        assert self.producer.flush(30) == 0

    def delivered(self, err, msg):
        if err is None:
            self.acked.append(msg.value().decode())

    def stop(self):
        self.stopping.set()
        self.join(timeout=60)
        return self.acked


def committed(cluster, group, topic):
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
        return {tp.partition: tp.offset for tp in parts}
    finally:
        consumer.close()


def restart(cluster, topic):
    cluster.stop_all()
    cluster.start_all()
    create_topic_leaders(cluster, topic)


def create_topic_leaders(cluster, topic):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})

    def leaders_known():
        meta = admin.list_topics(topic=topic, timeout=2)
        parts = meta.topics[topic].partitions
        return len(meta.brokers) == 3 and len(parts) == PARTITIONS and all(p.leader >= 0 for p in parts.values())

    wait_until(f"leaders of {topic} after the restart", leaders_known, cluster=cluster)


def run_group(cluster, tmp_path, client, churn, env=None):
    topic, group = f"{client}-orders", f"{client}-group"
    create_topic(cluster, topic, partitions=PARTITIONS)
    workers = Workers(cluster, tmp_path, client, group, topic, env)
    first = [f"first-{i}" for i in range(600)]
    produce(cluster, topic, first)
    feed = Feed(cluster, topic)
    feed.start()
    churn(workers, topic)
    live = feed.stop()
    names = [n for n in sorted(p.stem for p in Path(tmp_path).glob("*.jsonl"))]
    missing = lambda: set(first + live) - workers.processed(names)  # noqa: E731
    wait_until("every message processed", lambda: not missing(), 60, cluster)
    # A clean stop commits what was processed.
    workers.stop_all()
    before = committed(cluster, group, topic)
    assert sum(before.values()) == len(first) + len(live), before

    restart(cluster, topic)
    assert wait_until("offsets after the restart", lambda: committed(cluster, group, topic), 30, cluster) == before
    third = [f"third-{i}" for i in range(60)]
    produce(cluster, topic, third)
    workers.start("after-restart")
    wait_until("the new messages processed", lambda: workers.processed(["after-restart"]) >= set(third), 60, cluster)
    assert workers.processed(["after-restart"]) == set(third), "resumed from the committed offsets"
    workers.stop_all()


def churn(workers, topic):
    """Three members; a fourth joins; one leaves cleanly; one is killed (its
    partitions move once its session expires). Each step waits for the
    partitions to be spread over exactly the live members."""
    for name in ["a", "b", "c"]:
        workers.start(name)
    wait_until("6 partitions over a, b, c", lambda: workers.spread_over(["a", "b", "c"]), 60, workers.cluster)
    workers.start("d")
    wait_until("... over a, b, c, d", lambda: workers.spread_over(["a", "b", "c", "d"]), 60, workers.cluster)
    workers.stop("b")
    wait_until("... over a, c, d after b left", lambda: workers.spread_over(["a", "c", "d"]), 60, workers.cluster)
    wait_until("c working", lambda: any("v" in e for e in workers.events("c")), 60, workers.cluster)
    workers.kill("c")
    wait_until("... over a, d after c died", lambda: workers.spread_over(["a", "d"]), 60, workers.cluster)


def test_confluent_group_of_three_through_joins_leaves_and_kills(cluster, tmp_path):
    run_group(cluster, tmp_path, "confluent", churn)


def test_kafka_python_group_of_three_through_joins_leaves_and_kills(cluster, tmp_path):
    # The roundrobin assignor (confluent-kafka's test runs cooperative-sticky, the static one range).
    run_group(cluster, tmp_path, "kafka-python", churn, env={"ASSIGNOR": "roundrobin"})

def keel_group(cluster, *args):
    result = subprocess.run([KEEL, "group", *args, "--bootstrap", cluster.bootstrap],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def keel_json(cluster, *args, check=True):
    result = subprocess.run([KEEL, "group", *args, "--bootstrap", cluster.bootstrap, "--json"],
                            capture_output=True, text=True, timeout=60)
    if not check:
        return result
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def consume_all(cluster, group, topic, count):
    """A group member that reads `count` messages and commits them; returned still a member."""
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.subscribe([topic])
    values = []

    def read_more():
        values.extend(m.value().decode() for m in consumer.consume(100, 0.5) if not m.error())
        return len(values) >= count

    wait_until(f"{count} messages", read_more, 60, cluster)
    consumer.commit(asynchronous=False)
    return consumer, values


def test_keel_group_list_describe_and_reset_offsets(cluster):
    topic, group = "cli-orders", "cli-group"
    create_topic(cluster, topic, partitions=3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for i in range(30):
        producer.produce(topic, value=f"v{i}".encode(), partition=i % 3)
    assert producer.flush(30) == 0

    consumer, values = consume_all(cluster, group, topic, 30)
    assert sorted(values) == sorted(f"v{i}" for i in range(30))
    assert {"group": group, "protocol_type": "consumer", "state": "Stable"} in keel_json(cluster, "list")
    described = keel_json(cluster, "describe", group)
    assert described["state"] == "Stable" and len(described["members"]) == 1
    member = described["members"][0]
    assert member["assignment"] == [[topic, [0, 1, 2]]]
    assert [(o["partition"], o["committed"], o["lag"], o["member"]) for o in described["offsets"]] == [
        (p, 10, 0, member["member_id"]) for p in range(3)
    ]
    assert group in keel_group(cluster, "list")
    text = keel_group(cluster, "describe", group)
    assert "Stable" in text and "LAG" in text and f"{topic}:0,1,2" in text, text
    refused = keel_json(cluster, "reset-offsets", group, "--topic", topic, "--to-earliest", check=False)
    assert refused.returncode != 0 and "active member" in refused.stderr

    consumer.close()  # leaves the group
    wait_until("an empty group", lambda: keel_json(cluster, "describe", group)["state"] == "Empty", 30, cluster)
    keel_json(cluster, "reset-offsets", group, "--topic", topic, "--to-earliest")
    described = keel_json(cluster, "describe", group)
    assert [(o["committed"], o["lag"]) for o in described["offsets"]] == [(0, 10)] * 3
    # The group reads everything again from the reset offsets.
    consumer, again = consume_all(cluster, group, topic, 30)
    consumer.close()
    assert sorted(again) == sorted(values)


def coordinator_of(cluster, group):
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    return admin.describe_consumer_groups([group])[group].result(timeout=10).coordinator.id


def test_coordinator_failover_during_a_rebalance(cluster, tmp_path):
    """The coordinator's broker is killed as a member joins: the group settles
    on the partition's new leader, with every offset committed before intact."""
    topic, group = "failover-orders", "failover-group"
    create_topic(cluster, topic, partitions=PARTITIONS)
    workers = Workers(cluster, tmp_path, "confluent", group, topic)
    feed = Feed(cluster, topic)
    feed.start()
    for name in ["a", "b"]:
        workers.start(name)
    wait_until("6 partitions over a, b", lambda: workers.spread_over(["a", "b"]), 60, cluster)
    all_committed = lambda: all(o >= 0 for o in committed(cluster, group, topic).values())  # noqa: E731
    wait_until("offsets committed", all_committed, 60, cluster)
    before = committed(cluster, group, topic)
    old = coordinator_of(cluster, group)
    workers.start("c")
    cluster.kill(old)
    wait_until("... over a, b, c under a new coordinator", lambda: workers.spread_over(["a", "b", "c"]), 60, cluster)
    def new_coordinator():
        now = coordinator_of(cluster, group)
        return now if now not in (old, -1) else None

    assert wait_until("a new coordinator", new_coordinator, 30, cluster) in cluster.procs
    after = committed(cluster, group, topic)
    assert all(after[p] >= before[p] for p in range(PARTITIONS)), (before, after)
    live = feed.stop()
    processed = lambda: set(live) <= workers.processed(["a", "b", "c"])  # noqa: E731
    wait_until("every acknowledged message processed", processed, 60, cluster)
    workers.stop_all()


def test_a_static_member_restarts_into_its_partitions_without_a_rebalance(cluster, tmp_path):
    """A static member (group.instance.id) killed and started again within its
    session gets its partitions back, and the other member, under an eager
    assignor that revokes everything on any rebalance, sees none."""
    topic, group = "static-orders", "static-group"
    create_topic(cluster, topic, partitions=PARTITIONS)
    workers = Workers(cluster, tmp_path, "confluent", group, topic)
    # "leader" joins first and leads: a returning static leader would rebalance.
    workers.start("leader", env={"ASSIGNOR": "range", "GROUP_INSTANCE_ID": "leader-box"})
    wait_until("6 partitions on the leader", lambda: workers.spread_over(["leader"]), 60, cluster)
    static = {"ASSIGNOR": "range", "GROUP_INSTANCE_ID": "static-box"}
    workers.start("static", env=static)
    wait_until("6 partitions over both", lambda: workers.spread_over(["leader", "static"]), 60, cluster)
    held = workers.assignment("static")
    leader_events = len(workers.events("leader"))
    workers.kill("static")
    workers.start("static-again", env=static)
    wait_until("the partitions back", lambda: workers.assignment("static-again") == held, 30, cluster)
    assert workers.events("leader")[leader_events:] == [], "the other member saw no rebalance"
    workers.stop_all()


def test_the_offsets_topic_is_internal_and_refuses_client_writes(cluster):
    from confluent_kafka import KafkaError
    from kafka import KafkaAdminClient

    topic = "internal-check"
    create_topic(cluster, topic, partitions=1)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "message.timeout.ms": 20000})
    producer.produce(topic, value=b"v")
    assert producer.flush(30) == 0
    consumer, _ = consume_all(cluster, "internal-group", topic, 1)  # creates __consumer_offsets
    consumer.close()

    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    [described] = admin.describe_topics(["__consumer_offsets"])
    admin.close()
    assert described["is_internal"], described

    errors = []
    producer.produce("__consumer_offsets", value=b"forged", partition=0, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(30)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION, errors[0]
    # The group's committed offsets are still readable.
    assert committed(cluster, "internal-group", topic)[0] == 1
