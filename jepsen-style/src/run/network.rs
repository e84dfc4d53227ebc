//! Network partitions between real processes: each broker in its own network namespace, joined by a veth
//! pair to a bridge in the root namespace, where the clients run. A cut link drops every packet from one
//! broker to another inside the sender's namespace: with iptables (`OUTPUT -d peer -j DROP`, silent) when
//! it is installed, else with a blackhole route to the peer (iproute2 only; the sender's own connects fail
//! at once instead of timing out, packets of established connections are dropped).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use super::RunError;

/// How links are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cutter {
    Iptables,
    BlackholeRoute,
}

pub struct Network {
    /// Unique per run (from the pid), so concurrent runs do not meet.
    tag: String,
    subnet: [u8; 3],
    brokers: usize,
    cutter: Cutter,
    /// Created so far, removed on drop.
    namespaces: Vec<String>,
    /// The root namespace's ends of the veth pairs.
    veths: Vec<String>,
    bridge: Option<String>,
    /// (from, to): packets from broker `from` to broker `to` are dropped.
    cuts: Mutex<BTreeSet<(usize, usize)>>,
}

impl Network {
    /// Why partitions cannot run here, if they cannot: they need root and iproute2's `ip netns`.
    pub fn unavailable() -> Option<String> {
        if !is_root() {
            return Some("network namespaces need root (this process's uid is not 0)".into());
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(out) if out.status.success() => None,
            Ok(out) => Some(format!("`ip netns list` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => Some(format!("cannot run `ip` (iproute2): {e}")),
        }
    }

    /// One namespace per broker, each with a veth pair into a fresh bridge. On error, whatever was
    /// created is removed again.
    pub fn create(brokers: usize) -> Result<Network, RunError> {
        let pid = std::process::id();
        let tag = format!("kj{pid}");
        let subnet = [10, 200 + (pid % 50) as u8, ((pid / 50) % 250) as u8];
        let cutter = if Command::new("iptables").arg("--version").output().is_ok_and(|o| o.status.success()) {
            Cutter::Iptables
        } else {
            Cutter::BlackholeRoute
        };
        let mut network = Network {
            tag,
            subnet,
            brokers,
            cutter,
            namespaces: Vec::new(),
            veths: Vec::new(),
            bridge: None,
            cuts: Mutex::new(BTreeSet::new()),
        };
        network.build()?;
        Ok(network)
    }

    fn build(&mut self) -> Result<(), RunError> {
        let bridge = format!("{}br", self.tag);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.bridge = Some(bridge.clone());
        let gateway = format!("{}/24", self.root_addr());
        ip(&["addr", "add", &gateway, "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..self.brokers {
            let ns = format!("{}-{}", self.tag, i + 1);
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            let (host, inside) = (format!("{}h{}", self.tag, i + 1), format!("{}n{}", self.tag, i + 1));
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inside])?;
            self.veths.push(host.clone());
            ip(&["link", "set", &inside, "netns", &ns])?;
            ip(&["link", "set", &host, "master", &bridge, "up"])?;
            let addr = format!("{}/24", self.addr(i));
            ip(&["netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inside])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inside, "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// What the run prints once the namespaces are up.
    pub fn cutter_description(&self) -> String {
        match self.cutter {
            Cutter::Iptables => "network namespaces up; links cut with iptables DROP".into(),
            Cutter::BlackholeRoute => {
                "network namespaces up; iptables is not installed: links cut with blackhole routes".into()
            }
        }
    }

    /// Broker `i`'s (0-based) address.
    pub fn addr(&self, i: usize) -> IpAddr {
        let [a, b, c] = self.subnet;
        IpAddr::V4(Ipv4Addr::new(a, b, c, i as u8 + 1))
    }

    fn root_addr(&self) -> IpAddr {
        let [a, b, c] = self.subnet;
        IpAddr::V4(Ipv4Addr::new(a, b, c, 254))
    }

    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// Drops packets from broker `from` to broker `to` (0-based).
    pub fn cut(&self, from: usize, to: usize) -> Result<(), RunError> {
        let mut cuts = self.cuts.lock().unwrap_or_else(PoisonError::into_inner);
        if cuts.insert((from, to)) {
            self.rule(from, to, true)?;
        }
        Ok(())
    }

    /// Every link whole again.
    pub fn heal(&self) -> Result<(), RunError> {
        let mut cuts = self.cuts.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((from, to)) = cuts.pop_first() {
            self.rule(from, to, false)?;
        }
        Ok(())
    }

    fn rule(&self, from: usize, to: usize, add: bool) -> Result<(), RunError> {
        let ns = self.namespace(from);
        let peer = self.addr(to).to_string();
        match self.cutter {
            Cutter::Iptables => {
                let op = if add { "-A" } else { "-D" };
                ip(&["netns", "exec", ns, "iptables", op, "OUTPUT", "-d", &peer, "-j", "DROP"])
            }
            Cutter::BlackholeRoute => {
                let op = if add { "add" } else { "del" };
                ip(&["netns", "exec", ns, "ip", "route", op, "blackhole", &format!("{peer}/32")])
            }
        }
    }
}

impl Drop for Network {
    /// A namespace goes once nothing holds it (sockets of killed brokers may, for a while), and its veth
    /// pair with it: the pairs are deleted first, so nothing lingers in the root namespace.
    fn drop(&mut self) {
        for veth in self.veths.drain(..) {
            if let Err(e) = ip(&["link", "del", &veth]) {
                eprintln!("keel-jepsen: cleanup: {e}");
            }
        }
        for ns in self.namespaces.drain(..) {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("keel-jepsen: cleanup: {e}");
            }
        }
        if let Some(bridge) = self.bridge.take() {
            if let Err(e) = ip(&["link", "del", &bridge]) {
                eprintln!("keel-jepsen: cleanup: {e}");
            }
        }
    }
}

/// Whether this process runs as root (its real uid is 0).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    uid == Some("0")
}

/// Runs `ip args...`; a failure carries its stderr.
fn ip(args: &[&str]) -> Result<(), RunError> {
    let out = Command::new("ip").args(args).output().map_err(|e| RunError::io("cannot run ip", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RunError::Harness(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
