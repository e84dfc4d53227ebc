#!/usr/bin/env python3
"""Helpers for ci/bench-produce.sh (not a test).

  cluster.py ports N                       print N free TCP ports on 127.0.0.1
  cluster.py wait-brokers BOOTSTRAP N      wait until metadata lists N brokers
  cluster.py create-topic BOOTSTRAP TOPIC PARTITIONS RF
                                           create the topic, wait until each partition is led by
                                           its preferred replica (else the brokers' hand-over to it
                                           lands in a measured run, as a stall of ~0.5 s)
  cluster.py leaders BOOTSTRAP TOPIC       print partition -> leader
  cluster.py percentiles FILE              p50/p99/p999/max of a file of latencies in µs
"""

import sys
from pathlib import Path

# The end-to-end tests' harness: one copy of the port picking and the polling wait.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "raft-node" / "tests" / "e2e"))
from cluster import free_ports, wait_until  # noqa: E402


def admin(bootstrap):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def wait_brokers(bootstrap, n):
    a = admin(bootstrap)
    wait_until(f"{n} brokers in metadata", lambda: len(a.list_topics(timeout=5).brokers) >= n, timeout=120)


def topic_partitions(a, topic):
    md = a.list_topics(topic=topic, timeout=5).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        return None
    return sorted(md.partitions.items())


def topic_leaders(a, topic):
    partitions = topic_partitions(a, topic)
    return partitions and {p: pm.leader for p, pm in partitions}


def create_topic(bootstrap, topic, partitions, rf):
    from confluent_kafka.admin import NewTopic

    a = admin(bootstrap)
    futures = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=rf)], request_timeout=60)
    futures[topic].result(timeout=90)

    def preferred():
        got = topic_partitions(a, topic)
        if not got or len(got) != partitions or any(not pm.replicas or pm.leader != pm.replicas[0] for _, pm in got):
            return None
        return {p: pm.leader for p, pm in got}

    leaders = wait_until(f"the preferred leader for each partition of {topic}", preferred, timeout=120)
    print(" ".join(f"p{p}->broker{l}" for p, l in leaders.items()))


def percentiles(path):
    with open(path) as f:
        xs = sorted(int(line) for line in f if line.strip())
    if not xs:
        sys.exit(f"no latency samples in {path}")

    def pct(q):
        return xs[min(len(xs) - 1, int(q * len(xs)))] / 1000.0

    print(f"n={len(xs)} p50_ms={pct(0.50):.1f} p99_ms={pct(0.99):.1f} p999_ms={pct(0.999):.1f} max_ms={xs[-1] / 1000.0:.1f}")


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "ports":
        print(" ".join(map(str, free_ports(int(argv[2])))))
    elif cmd == "wait-brokers":
        wait_brokers(argv[2], int(argv[3]))
    elif cmd == "create-topic":
        create_topic(argv[2], argv[3], int(argv[4]), int(argv[5]))
    elif cmd == "leaders":
        print(topic_leaders(admin(argv[2]), argv[3]))
    elif cmd == "percentiles":
        percentiles(argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
