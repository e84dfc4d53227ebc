//! Real `keel broker` processes on this machine: each with its config file, data directory and log file
//! under the run's directory, optionally inside its own network namespace. Brokers are killed (SIGKILL)
//! and restarted with their data, paused (SIGSTOP) and resumed (SIGCONT).

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::disks::Disks;
use super::network::Network;
use super::RunError;

const KAFKA_PORT: u16 = 9092;
const RAFT_PORT: u16 = 19092;

/// Where one broker listens, and in which network namespace it runs.
#[derive(Clone, Debug)]
struct Placement {
    kafka: SocketAddr,
    raft: SocketAddr,
    netns: Option<String>,
}

struct Broker {
    id: u64,
    placement: Placement,
    child: Option<Child>,
    paused: bool,
}

pub struct Cluster {
    dir: PathBuf,
    keel: PathBuf,
    planted: Option<String>,
    brokers: Mutex<Vec<Broker>>,
}

impl Cluster {
    /// Writes each broker's config under `dir`, every one naming the first `founders` brokers as the
    /// cluster (a broker beyond them joins it). With a `network`, broker i listens on its namespace's
    /// address; without, on free ports of 127.0.0.1. With `disks`, its data lives on its own disk.
    pub fn new(
        dir: &Path,
        keel: &Path,
        count: usize,
        founders: usize,
        network: Option<&Network>,
        disks: Option<&Disks>,
        planted: Option<String>,
    ) -> Result<Cluster, RunError> {
        let placements: Vec<Placement> = match network {
            Some(network) => (0..count)
                .map(|i| Placement {
                    kafka: SocketAddr::new(network.addr(i), KAFKA_PORT),
                    raft: SocketAddr::new(network.addr(i), RAFT_PORT),
                    netns: Some(network.namespace(i).to_string()),
                })
                .collect(),
            None => {
                let ports = free_ports(2 * count).map_err(|e| RunError::io("cannot find free ports", e))?;
                (0..count)
                    .map(|i| Placement {
                        kafka: SocketAddr::from(([127, 0, 0, 1], ports[i])),
                        raft: SocketAddr::from(([127, 0, 0, 1], ports[count + i])),
                        netns: None,
                    })
                    .collect()
            }
        };
        let mut members = String::new();
        for (i, p) in placements.iter().enumerate().take(founders) {
            let _ = write!(members, "[[cluster]]\nid = {}\nraft = \"{}\"\n", i + 1, p.raft);
        }
        let mut brokers = Vec::new();
        for (i, placement) in placements.into_iter().enumerate() {
            let id = i as u64 + 1;
            let data = disks.map_or_else(|| dir.join(format!("data-{id}")), |d| d.data_dir(i));
            let config = format!(
                "node_id = {id}\ndata_dir = \"{}\"\n[kafka]\nlisten = \"{}\"\n[raft]\nlisten = \"{}\"\ntick_ms = 100\n{members}",
                data.display(),
                placement.kafka,
                placement.raft,
            );
            let path = dir.join(format!("broker-{id}.toml"));
            std::fs::write(&path, config).map_err(|e| RunError::io(format!("cannot write {}", path.display()), e))?;
            brokers.push(Broker { id, placement, child: None, paused: false });
        }
        Ok(Cluster { dir: dir.to_path_buf(), keel: keel.to_path_buf(), planted, brokers: Mutex::new(brokers) })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Broker>> {
        self.brokers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn size(&self) -> usize {
        self.lock().len()
    }

    /// The Kafka addresses of every broker.
    pub fn bootstrap(&self) -> Vec<String> {
        self.lock().iter().map(|b| b.placement.kafka.to_string()).collect()
    }

    /// Starts broker `i` (0-based) unless it runs; its output goes to broker-<id>.log.
    pub fn start(&self, i: usize) -> Result<(), RunError> {
        let mut brokers = self.lock();
        let broker = &mut brokers[i];
        if broker.child.is_some() {
            return Ok(());
        }
        let log_path = self.dir.join(format!("broker-{}.log", broker.id));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| RunError::io(format!("cannot open {}", log_path.display()), e))?;
        let err_log = log.try_clone().map_err(|e| RunError::io("cannot share the broker log", e))?;
        let config = self.dir.join(format!("broker-{}.toml", broker.id));
        // `ip netns exec` execs the broker in place, so the child's pid is the broker's.
        let mut command = match &broker.placement.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.keel);
                c
            }
            None => Command::new(&self.keel),
        };
        command.arg("broker").arg("--config").arg(&config).stdin(Stdio::null()).stdout(log).stderr(err_log);
        match &self.planted {
            Some(bug) => command.env("KEEL_PLANTED_BUG", bug),
            None => command.env_remove("KEEL_PLANTED_BUG"),
        };
        let child = command
            .spawn()
            .map_err(|e| RunError::io(format!("cannot start {} for broker {}", self.keel.display(), broker.id), e))?;
        broker.child = Some(child);
        broker.paused = false;
        Ok(())
    }

    /// SIGKILL broker `i` and reap it.
    pub fn kill(&self, i: usize) -> Result<(), RunError> {
        let mut brokers = self.lock();
        let broker = &mut brokers[i];
        if let Some(mut child) = broker.child.take() {
            child
                .kill()
                .and_then(|()| child.wait())
                .map_err(|e| RunError::io(format!("cannot kill broker {}", broker.id), e))?;
        }
        broker.paused = false;
        Ok(())
    }

    /// SIGTERM broker `i` (a clean stop) and reap it; SIGKILL if it has not exited within `grace`.
    pub async fn terminate(&self, i: usize, grace: Duration) -> Result<(), RunError> {
        self.signal(i, "TERM", false)?;
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if self.reap(i)? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill(i)
    }

    /// Whether broker `i` is not running (reaped if it just exited).
    fn reap(&self, i: usize) -> Result<bool, RunError> {
        let mut brokers = self.lock();
        let broker = &mut brokers[i];
        let Some(child) = &mut broker.child else { return Ok(true) };
        match child.try_wait() {
            Ok(Some(_)) => {
                broker.child = None;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(RunError::io(format!("cannot wait for broker {}", broker.id), e)),
        }
    }

    pub fn pause(&self, i: usize) -> Result<(), RunError> {
        self.signal(i, "STOP", true)
    }

    pub fn resume(&self, i: usize) -> Result<(), RunError> {
        self.signal(i, "CONT", false)
    }

    fn signal(&self, i: usize, signal: &str, paused: bool) -> Result<(), RunError> {
        let mut brokers = self.lock();
        let broker = &mut brokers[i];
        let Some(child) = &broker.child else { return Ok(()) };
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .map_err(|e| RunError::io("cannot run kill", e))?;
        if !status.success() {
            return Err(RunError::Harness(format!("kill -{signal} of broker {} failed: {status}", broker.id)));
        }
        broker.paused = paused;
        Ok(())
    }

    /// Every fault off: paused brokers resumed, dead ones restarted.
    pub fn heal(&self) -> Result<(), RunError> {
        for i in 0..self.size() {
            self.resume_if_paused(i)?;
            self.start(i)?;
        }
        Ok(())
    }

    fn resume_if_paused(&self, i: usize) -> Result<(), RunError> {
        let paused = self.lock()[i].paused;
        if paused {
            self.resume(i)?;
        }
        Ok(())
    }

    /// Brokers that exited by themselves since the last call (reaped: a heal restarts them), with how.
    pub fn take_exits(&self) -> Vec<(u64, ExitStatus)> {
        let mut exits = Vec::new();
        for broker in self.lock().iter_mut() {
            let Some(child) = &mut broker.child else { continue };
            if let Ok(Some(status)) = child.try_wait() {
                exits.push((broker.id, status));
                broker.child = None;
                broker.paused = false;
            }
        }
        exits
    }

    /// The last lines of broker `id`'s log, to explain an exit.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("broker-{id}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills every broker (resumed first, so none is left stopped); also done on drop.
    pub fn shutdown(&self) {
        for broker in self.lock().iter_mut() {
            if let Some(mut child) = broker.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Ports free right now on 127.0.0.1 (a race with other programs is possible, and unlikely).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect()
}
