"""A cluster of real `keel broker` processes on this machine, for end-to-end tests.

Each broker gets its own config file, data directory and log file under a
temporary directory; ports are chosen free. Brokers can be killed (SIGKILL),
stopped (SIGTERM) and restarted with their data.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

KEEL = os.environ.get("KEEL_BIN", str(Path(__file__).resolve().parents[3] / "target" / "debug" / "keel"))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Cluster:
    def __init__(self, root, brokers=3, extra_config=""):
        self.root = Path(root)
        ports = free_ports(2 * brokers)
        self.ids = list(range(1, brokers + 1))
        self.kafka = {i: ports[i - 1] for i in self.ids}
        self.raft = {i: ports[brokers + i - 1] for i in self.ids}
        self.procs = {}
        members = "".join(f'[[cluster]]\nid = {i}\nraft = "127.0.0.1:{self.raft[i]}"\n' for i in self.ids)
        for i in self.ids:
            (self.root / f"broker-{i}.toml").write_text(
                f'node_id = {i}\ndata_dir = "{self.root}/data-{i}"\n'
                f'[kafka]\nlisten = "127.0.0.1:{self.kafka[i]}"\n'
                f'[raft]\nlisten = "127.0.0.1:{self.raft[i]}"\ntick_ms = 50\n'
                f"{members}{extra_config}"
            )

    def add_joiner(self, i):
        """Writes broker `i`'s config: not among the founders' `[[cluster]]`, so it joins."""
        kafka, raft = free_ports(2)
        self.ids.append(i)
        self.kafka[i], self.raft[i] = kafka, raft
        members = "".join(f'[[cluster]]\nid = {f}\nraft = "127.0.0.1:{self.raft[f]}"\n' for f in self.ids if f != i)
        (self.root / f"broker-{i}.toml").write_text(
            f'node_id = {i}\ndata_dir = "{self.root}/data-{i}"\n'
            f'[kafka]\nlisten = "127.0.0.1:{kafka}"\n'
            f'[raft]\nlisten = "127.0.0.1:{raft}"\ntick_ms = 50\n'
            f"{members}"
        )

    @property
    def bootstrap(self):
        return ",".join(f"127.0.0.1:{self.kafka[i]}" for i in self.ids if i in self.procs)

    def start(self, i):
        log = open(self.root / f"broker-{i}.log", "a")
        self.procs[i] = subprocess.Popen(
            [KEEL, "broker", "--config", str(self.root / f"broker-{i}.toml")], stdout=log, stderr=log
        )

    def start_all(self):
        for i in self.ids:
            self.start(i)

    def kill(self, i, sig=signal.SIGKILL):
        proc = self.procs.pop(i)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        return proc.returncode

    def stop_all(self):
        for i in list(self.procs):
            self.kill(i, signal.SIGTERM)

    def log_of(self, i):
        return (self.root / f"broker-{i}.log").read_text()

    def check_alive(self):
        for i, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"broker {i} exited with {proc.returncode}:\n{self.log_of(i)[-4000:]}")


def wait_until(what, predicate, timeout=60.0, cluster=None):
    """Polls `predicate` until it returns a truthy value; fails with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if cluster is not None:
            cluster.check_alive()
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # the cluster may still be forming
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{what} not reached in {timeout}s (last: {last!r})")
