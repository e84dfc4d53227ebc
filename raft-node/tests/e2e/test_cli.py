"""The `keel` client commands against a three-broker cluster: topic admin,
produce and consume round trips, JSON output, and helpful errors."""

import json
import subprocess

import pytest

from cluster import KEEL, wait_until
from conftest import running_cluster


def keel(cluster, *args, stdin=None, check=True, timeout=60):
    result = subprocess.run(
        [KEEL, *args, "--bootstrap", cluster.bootstrap],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert result.returncode == 0, f"keel {' '.join(args)}: {result.stderr}"
    return result


def keel_json(cluster, *args, **kwargs):
    return json.loads(keel(cluster, *args, "--json", **kwargs).stdout)


def test_topic_create_list_describe_delete(cluster):
    keel(cluster, "topic", "create", "events", "--partitions", "3", "--replication-factor", "3",
         "--config", "retention.ms=3600000")
    listed = keel_json(cluster, "topic", "list")
    assert {"name": "events", "partitions": 3, "replication_factor": 3} in listed
    assert "events" in keel(cluster, "topic", "list").stdout

    described = keel_json(cluster, "topic", "describe", "events")
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    for p in described["partitions"]:
        assert sorted(p["replicas"]) == [1, 2, 3] and p["leader"] in p["replicas"]
        assert (p["earliest_offset"], p["latest_offset"]) == (0, 0)
    assert described["configs"]["retention.ms"] == {"value": "3600000", "source": "topic"}
    assert described["configs"]["cleanup.policy"] == {"value": "delete", "source": "default"}
    human = keel(cluster, "topic", "describe", "events").stdout
    assert "retention.ms = 3600000 (set on the topic)" in human

    keel(cluster, "topic", "delete", "events")
    assert all(t["name"] != "events" for t in keel_json(cluster, "topic", "list"))


def test_produce_and_consume_keys_and_values_in_partition_order(cluster):
    keel(cluster, "topic", "create", "lines", "--partitions", "3")
    lines = [f"key-{i % 5}\tvalue-{i}" for i in range(200)]
    produced = keel_json(cluster, "produce", "lines", "--key-separator", stdin="\n".join(lines) + "\n")
    assert produced["records"] == 200

    records = [json.loads(l) for l in keel(cluster, "consume", "lines", "--json").stdout.splitlines()]
    assert len(records) == 200
    # Every key lands on one partition, and each partition reads back in the order sent.
    by_partition = {}
    for r in records:
        by_partition.setdefault(r["partition"], []).append(r)
    for partition, rs in by_partition.items():
        assert [r["offset"] for r in rs] == list(range(len(rs)))
    partition_of_key = {}
    for r in records:
        assert partition_of_key.setdefault(r["key"], r["partition"]) == r["partition"]
    for key in partition_of_key:
        sent = [l.split("\t")[1] for l in lines if l.split("\t")[0] == key]
        assert [r["value"] for r in records if r["key"] == key] == sent

    # Human output: `partition offset key value`.
    first = keel(cluster, "consume", "lines", "--partition", str(records[0]["partition"]), "--max-messages", "1")
    r = records[0]
    assert first.stdout == f"{r['partition']} {r['offset']} {r['key']} {r['value']}\n"


def test_values_without_keys_and_offsets(cluster):
    keel(cluster, "topic", "create", "plain", "--partitions", "1")
    keel(cluster, "produce", "plain", "--acks", "1", stdin="a\nb c\nd\n")
    out = keel(cluster, "consume", "plain", "--offset", "1").stdout
    assert out == "0 1 - b c\n0 2 - d\n"
    described = keel_json(cluster, "topic", "describe", "plain")
    assert described["partitions"][0]["latest_offset"] == 3


def test_follow_stops_at_max_messages(cluster):
    keel(cluster, "topic", "create", "tail", "--partitions", "2")
    follower = subprocess.Popen(
        [KEEL, "consume", "tail", "--follow", "--max-messages", "4", "--json", "--bootstrap", cluster.bootstrap],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # The follower starts at the end, so produce until it has seen four
    # records: it may have joined after some of the first ones.
    seen = None
    try:
        for i in range(20):
            keel(cluster, "produce", "tail", "--key", f"k{i}", stdin=f"v{i}\n")
            if follower.poll() is not None:
                break
            try:
                follower.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                pass
        out, err = follower.communicate(timeout=30)
        assert follower.returncode == 0, err
        seen = [json.loads(l) for l in out.splitlines()]
    finally:
        if follower.poll() is None:
            follower.kill()
    assert len(seen) == 4
    assert all(r["value"] == f"v{r['key'][1:]}" for r in seen)


def test_unknown_topic_suggests_a_similar_name(cluster):
    keel(cluster, "topic", "create", "orders", "--partitions", "1")
    for args in (["consume", "ordrs"], ["topic", "describe", "ordrs"], ["produce", "ordrs"]):
        result = keel(cluster, *args, stdin="x\n", check=False)
        assert result.returncode != 0
        assert 'unknown topic "ordrs"; did you mean "orders"?' in result.stderr, result.stderr
    unrelated = keel(cluster, "topic", "delete", "inventory", check=False)
    assert unrelated.returncode != 0 and 'unknown topic "inventory"' in unrelated.stderr


def test_cluster_status(cluster):
    keel(cluster, "topic", "create", "status", "--partitions", "2")
    status = keel_json(cluster, "cluster", "status")
    assert sorted(b["id"] for b in status["brokers"]) == [1, 2, 3]
    assert status["controller"] in (1, 2, 3)
    assert [b["address"] for b in status["brokers"] if b["id"] == 1] == [f"127.0.0.1:{cluster.kafka[1]}"]
    topic = next(t for t in status["topics"] if t["name"] == "status")
    assert [p["partition"] for p in topic["partitions"]] == [0, 1]
    human = keel(cluster, "cluster", "status").stdout
    assert "__cluster_metadata  0" in human and "REPLICA:LOG END(-LAG)" in human, human


def quorums(status):
    """Every group's quorum in a `cluster status --json`: (topic, partition) -> quorum."""
    groups = {("__cluster_metadata", 0): status["metadata_quorum"]}
    for t in status["topics"]:
        for p in t["partitions"]:
            groups[(t["name"], p["partition"])] = p["quorum"]
    return groups


def lags(cluster, topic):
    """(topic, partition) -> {replica: lag} of the metadata log and `topic`'s partitions
    (lag None: unknown to the leader); fails if a group could not be described."""
    groups = quorums(keel_json(cluster, "cluster", "status", timeout=120))
    out = {}
    for key, q in groups.items():
        if key[0] in ("__cluster_metadata", topic):
            assert "error" not in q, f"{key}: {q}"
            out[key] = {r["id"]: r["lag"] for r in q["replica_status"]}
    return out


def all_caught_up(cluster, topic, partitions):
    current = lags(cluster, topic)
    return len(current) == partitions + 1 and all(l == {1: 0, 2: 0, 3: 0} for l in current.values()) and current


def test_cluster_status_shows_replica_lag(cluster):
    keel(cluster, "topic", "create", "lag", "--partitions", "2")
    keel(cluster, "produce", "lag", stdin="".join(f"a{i}\n" for i in range(20)))
    wait_until("every replica caught up", lambda: all_caught_up(cluster, "lag", 2), cluster=cluster)
    status = keel_json(cluster, "cluster", "status")
    for (topic, partition), q in quorums(status).items():
        leader_end = q["log_end_offset"]
        assert [(r["id"], r["voter"], r["log_end_offset"]) for r in q["replica_status"]] == [
            (i, True, leader_end) for i in (1, 2, 3)
        ], (topic, partition, q)
        if topic == "lag":
            assert leader_end == q["high_watermark"] == 10

    # A broker leading neither partition (the metadata log's leader only if it must be).
    partitions = next(t for t in status["topics"] if t["name"] == "lag")["partitions"]
    leaders = {p["quorum"]["leader"] for p in partitions}
    followers = [i for i in (1, 2, 3) if i not in leaders]
    victim = next((i for i in followers if i != status["controller"]), followers[0])
    cluster.kill(victim)
    keel(cluster, "produce", "lag", stdin="".join(f"b{i}\n" for i in range(20)))

    def victim_lags():
        current = lags(cluster, "lag")
        behind = [current[("lag", p)][victim] for p in (0, 1)]
        # The others catch up; the dead broker's replicas stay where it died.
        others = [l for key, ls in current.items() if key[0] == "lag" for i, l in ls.items() if i != victim]
        return all(b is not None and b > 0 for b in behind) and others == [0] * 4 and behind

    assert wait_until("the killed broker's replicas lag", victim_lags, cluster=cluster) == [10, 10]
    human = keel(cluster, "cluster", "status").stdout
    assert f"{victim}:10(-10)" in human and "2 of 9 replicas behind their leaders" in human, human

    cluster.start(victim)
    wait_until("the restarted broker caught up", lambda: all_caught_up(cluster, "lag", 2), cluster=cluster)
    assert "all 9 replicas are caught up with their leaders" in keel(cluster, "cluster", "status").stdout


def test_refused_connection_names_the_address_and_keel_dev(tmp_path):
    from cluster import free_ports

    (port,) = free_ports(1)
    result = subprocess.run([KEEL, "topic", "list", "--bootstrap", f"127.0.0.1:{port}"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr and "keel dev" in result.stderr, result.stderr


def test_reassign_moves_a_partition_while_producing_and_deletes_the_old_replica(cluster):
    keel(cluster, "topic", "create", "moving", "--partitions", "1", "--replication-factor", "2")
    wait_until("a leader", lambda: keel_json(cluster, "topic", "describe", "moving")["partitions"][0]["leader"],
               cluster=cluster)
    replicas = keel_json(cluster, "topic", "describe", "moving")["partitions"][0]["replicas"]
    (spare,) = {1, 2, 3} - set(replicas)
    kept, removed = replicas
    target = [spare, kept]
    keel(cluster, "produce", "moving", stdin="".join(f"before-{i}\n" for i in range(100)))

    planned = keel_json(cluster, "cluster", "rebalance", "--dry-run")
    assert planned["dry_run"] and all(m["result"] == "planned" for m in planned["moves"])
    moved = keel_json(cluster, "cluster", "reassign", "moving", "0", "--replicas", f"{spare},{kept}")
    assert moved["moves"] == [{"topic": "moving", "partition": 0, "from": replicas, "to": target,
                               "result": "started"}]
    keel(cluster, "produce", "moving", stdin="".join(f"during-{i}\n" for i in range(100)))

    def settled():
        status = keel_json(cluster, "cluster", "status")
        partition = next(t for t in status["topics"] if t["name"] == "moving")["partitions"][0]
        return status["moves"] == [] and partition["replicas"] == target

    wait_until("the move to complete", settled, cluster=cluster)
    old_files = lambda: [f for f in (cluster.root / f"data-{removed}").iterdir() if f.name.startswith("p-")]
    wait_until(f"broker {removed} to delete its replica", lambda: old_files() == [], cluster=cluster)
    values = [l.split()[-1] for l in keel(cluster, "consume", "moving").stdout.splitlines()]
    assert values == [f"before-{i}" for i in range(100)] + [f"during-{i}" for i in range(100)]

    refused = keel(cluster, "cluster", "reassign", "moving", "0", "--cancel", check=False)
    assert refused.returncode != 0 and "NO_REASSIGNMENT_IN_PROGRESS" in refused.stdout
    wrong = keel(cluster, "cluster", "decommission", "9", check=False)
    assert wrong.returncode != 0 and "not registered" in wrong.stderr


def test_a_draining_broker_gets_no_new_replicas_until_undone(cluster):
    assert not any(b["draining"] for b in keel_json(cluster, "cluster", "status")["brokers"])
    keel(cluster, "cluster", "decommission", "2", "--dry-run")
    assert not any(b["draining"] for b in keel_json(cluster, "cluster", "status")["brokers"]), "a dry run marks nothing"

    keel(cluster, "cluster", "decommission", "2")
    brokers = keel_json(cluster, "cluster", "status")["brokers"]
    assert {b["id"]: b["draining"] for b in brokers} == {1: False, 2: True, 3: False}
    assert "draining" in next(l for l in keel(cluster, "cluster", "status").stdout.splitlines() if l.startswith("2 "))
    refused = keel(cluster, "topic", "create", "wide", "--partitions", "2", "--replication-factor", "3", check=False)
    assert refused.returncode != 0 and "draining: 2" in refused.stderr, refused.stderr
    keel(cluster, "topic", "create", "narrow", "--partitions", "4", "--replication-factor", "2")
    placed = keel_json(cluster, "topic", "describe", "narrow")["partitions"]
    assert all(sorted(p["replicas"]) == [1, 3] for p in placed), placed

    keel(cluster, "cluster", "decommission", "2", "--undo")
    assert not any(b["draining"] for b in keel_json(cluster, "cluster", "status")["brokers"])
    keel(cluster, "topic", "create", "wide", "--partitions", "2", "--replication-factor", "3")


@pytest.fixture
def auto_cluster(tmp_path):
    """Three brokers whose metadata leader rebalances replicas by itself every second."""
    yield from running_cluster(tmp_path, "[moves]\nauto_rebalance = true\nauto_rebalance_check_ms = 1000\n")


def replicas_per_broker(status):
    """Replicas each registered broker holds, every topic's partitions counted."""
    loads = {b["id"]: 0 for b in status["brokers"]}
    for t in status["topics"]:
        for p in t["partitions"]:
            for r in p["replicas"]:
                loads[r] = loads.get(r, 0) + 1
    return loads


def settled(cluster, check):
    """The status once no move is in progress and `check` holds of it."""
    status = keel_json(cluster, "cluster", "status")
    return status if status["moves"] == [] and check(status) else None


def test_a_decommissioned_broker_stays_empty_under_the_automatic_rebalance(auto_cluster):
    cluster = auto_cluster
    keel(cluster, "topic", "create", "spread", "--partitions", "4", "--replication-factor", "2")
    keel(cluster, "produce", "spread", stdin="".join(f"v-{i}\n" for i in range(40)))
    cluster.add_joiner(4)
    cluster.start(4)
    wait_until("the automatic rebalance to give broker 4 its share",
               lambda: settled(cluster, lambda s: replicas_per_broker(s).get(4, 0) >= 2), cluster=cluster)

    # The automatic rebalance may start moving broker 4's replicas off as
    # soon as it is marked, and then refuses the command's own plan.
    decommissioned = keel(cluster, "cluster", "decommission", "4", check=False)
    assert decommissioned.returncode == 0 or "move" in decommissioned.stderr, decommissioned.stderr
    emptied = lambda s: replicas_per_broker(s)[4] == 0
    status = wait_until("broker 4 emptied", lambda: settled(cluster, emptied), cluster=cluster)
    assert next(b for b in status["brokers"] if b["id"] == 4)["draining"]

    # Unbalance brokers 1-3 by hand: the automatic rebalance evens them out
    # again, and that look, after the decommission, leaves broker 4 empty.
    loads = replicas_per_broker(status)
    most = max((1, 2, 3), key=lambda b: loads[b])
    partition = next(p for p in next(t for t in status["topics"] if t["name"] == "spread")["partitions"]
                     if most not in p["replicas"])
    unbalanced = [most] + partition["replicas"][1:]
    moved = keel_json(cluster, "cluster", "reassign", "spread", str(partition["partition"]),
                      "--replicas", ",".join(map(str, unbalanced)))
    assert moved["moves"][0]["result"] == "started"
    even = lambda s: max(replicas_per_broker(s)[b] for b in (1, 2, 3)) - min(
        replicas_per_broker(s)[b] for b in (1, 2, 3)) <= 1
    status = wait_until("the automatic rebalance to even brokers 1-3 out", lambda: settled(cluster, even),
                        cluster=cluster)
    assert replicas_per_broker(status)[4] == 0, status

    keel(cluster, "cluster", "remove-broker", "4")
    assert sorted(b["id"] for b in keel_json(cluster, "cluster", "status")["brokers"]) == [1, 2, 3]
    values = [l.split()[-1] for l in keel(cluster, "consume", "spread").stdout.splitlines()]
    assert sorted(values) == sorted(f"v-{i}" for i in range(40))


def metadata_members(cluster):
    """The metadata group as its leader reports it: ({voters}, {observers})."""
    replicas = keel_json(cluster, "cluster", "status")["metadata_quorum"].get("replica_status", [])
    return ({r["id"] for r in replicas if r["voter"]}, {r["id"] for r in replicas if not r["voter"]})


def test_a_broker_joins_takes_a_replica_and_a_founder_leaves(cluster):
    keel(cluster, "topic", "create", "grow", "--partitions", "1", "--replication-factor", "3")
    keel(cluster, "produce", "grow", stdin="".join(f"before-{i}\n" for i in range(50)))
    cluster.add_joiner(4)
    cluster.start(4)
    wait_until("broker 4 to join as a metadata learner",
               lambda: metadata_members(cluster) == ({1, 2, 3}, {4}), cluster=cluster)
    # A restarted joiner rejoins from its own disk.
    cluster.kill(4)
    cluster.start(4)
    moved = keel_json(cluster, "cluster", "reassign", "grow", "0", "--replicas", "4,1,2")
    assert moved["moves"][0]["result"] == "started"

    def moved_onto_4():
        status = keel_json(cluster, "cluster", "status")
        partition = next(t for t in status["topics"] if t["name"] == "grow")["partitions"][0]
        return status["moves"] == [] and partition["replicas"] == [4, 1, 2]

    wait_until("the move onto broker 4", moved_onto_4, cluster=cluster)
    refused = keel(cluster, "cluster", "remove-broker", "4", check=False)
    assert refused.returncode != 0 and "still holds a replica" in refused.stderr, refused.stderr

    keel(cluster, "cluster", "decommission", "3")
    wait_until("the decommission", lambda: keel_json(cluster, "cluster", "status")["moves"] == [], cluster=cluster)
    keel(cluster, "cluster", "remove-broker", "3")
    cluster.kill(3)
    wait_until("broker 4 to replace voter 3", lambda: metadata_members(cluster) == ({1, 2, 4}, set()),
               cluster=cluster)
    assert sorted(b["id"] for b in keel_json(cluster, "cluster", "status")["brokers"]) == [1, 2, 4]
    keel(cluster, "produce", "grow", stdin="".join(f"after-{i}\n" for i in range(50)))
    values = [l.split()[-1] for l in keel(cluster, "consume", "grow").stdout.splitlines()]
    assert values == [f"before-{i}" for i in range(50)] + [f"after-{i}" for i in range(50)]
