"""Move benchmark (not a test): the time to move one partition's replica to
another broker, and acks=all produce throughput and p99 latency to that
partition during the move, as ratios against the same producer's numbers
measured just before it, in the same run.

    python3 ci/bench/move.py KEEL_BIN DATA_DIR [GIB [THROTTLE]]

Starts `keel dev --brokers 4` (with `--move-throttle THROTTLE` bytes/s when
given: 0 for no limit, else the default 50 MiB/s), puts a 1-partition topic on brokers 1, 2, 3,
fills it with GIB (default 1) GiB of 100 KiB records, then runs a paced
producer of 1 KiB records (1,000/s requested, linger.ms=5) for 20 s as the reference, and
again while `keel cluster reassign` moves the partition to 2, 3, 4 until the
move completes. Needs confluent-kafka (the e2e venv has it).
"""

import json
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Producer

# The end-to-end tests' harness, as ci/bench/cluster.py uses it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "raft-node" / "tests" / "e2e"))
from cluster import wait_until  # noqa: E402

BOOTSTRAP = "127.0.0.1:29092"
TOPIC = "move-bench"


def keel(bin, *args, check=True):
    out = subprocess.run([bin, *args, "--bootstrap", BOOTSTRAP], check=check, capture_output=True, text=True)
    return out.stdout


def percentiles_of(latencies):
    xs = sorted(latencies)
    if not xs:
        return float("nan"), float("nan")
    return xs[len(xs) // 2], xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def fill(gib):
    p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20})
    failed = []
    value = b"x" * (100 << 10)
    count = int(gib * (1 << 30)) // len(value)
    start = time.monotonic()
    for i in range(count):
        while True:
            try:
                p.produce(TOPIC, value, partition=0, on_delivery=lambda e, _m: e and failed.append(e))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush()
    secs = time.monotonic() - start
    if failed:
        sys.exit(f"{len(failed)} fill records failed, e.g. {failed[0]}")
    print(f"filled {count * len(value) / (1 << 30):.2f} GiB in {secs:.1f} s", flush=True)


def paced(seconds, until=None):
    """Sends 1 KiB records at about 1,000/s for `seconds` (or until `until()`);
    returns (acknowledged per second, p50 ms, p99 ms, seconds)."""
    p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "linger.ms": 5})
    latencies = []

    def done(err, _msg, sent):
        if err is None:
            latencies.append((time.monotonic() - sent) * 1000)

    start = time.monotonic()
    n = 0
    checked = start
    while True:
        now = time.monotonic()
        if until is None and now - start >= seconds:
            break
        # `until` asks the cluster (a process): four times a second, not per record.
        if until is not None and now - checked >= 0.25:
            checked = now
            if until():
                break
        sent = time.monotonic()
        p.produce(TOPIC, b"y" * 1024, partition=0, on_delivery=lambda e, m, s=sent: done(e, m, s))
        n += 1
        p.poll(0)
        ahead = n / 1000 - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    p.flush()
    secs = time.monotonic() - start
    p50, p99 = percentiles_of(latencies)
    return len(latencies) / secs, p50, p99, secs


def moving(bin):
    out = json.loads(keel(bin, "cluster", "status", "--json"))
    return bool(out.get("moves"))


def main(argv):
    bin, data = argv[1], argv[2]
    gib = float(argv[3]) if len(argv) > 3 else 1.0
    throttle = ["--move-throttle", argv[4]] if len(argv) > 4 else []
    dev = subprocess.Popen([bin, "dev", "--brokers", "4", "--port", "29092", "--data-dir", data, *throttle],
                           stdout=subprocess.DEVNULL, stderr=open(f"{data}.log", "w"))
    try:
        wait_until("4 brokers", lambda: '"id":4' in keel(bin, "cluster", "status", "--json", check=False), timeout=120)
        keel(bin, "topic", "create", TOPIC, "--partitions", "1", "--replication-factor", "3")
        # Refused when the partition is on 1, 2, 3 already.
        keel(bin, "cluster", "reassign", TOPIC, "0", "--replicas", "1,2,3", check=False)
        while moving(bin):
            time.sleep(0.5)
        fill(gib)
        ref = paced(20)
        print("reference: %.0f msg/s, p50 %.1f ms, p99 %.1f ms over %.1f s" % ref, flush=True)
        start = time.monotonic()
        keel(bin, "cluster", "reassign", TOPIC, "0", "--replicas", "2,3,4")
        during = paced(0, until=lambda: not moving(bin))
        took = time.monotonic() - start
        print("move: %.1f s" % took)
        print("during the move: %.0f msg/s, p50 %.1f ms, p99 %.1f ms over %.1f s" % during)
        print("ratios (during / reference): throughput %.2f, p99 %.2f" % (during[0] / ref[0], during[2] / ref[2]))
    finally:
        dev.terminate()
        dev.wait()


if __name__ == "__main__":
    main(sys.argv)
