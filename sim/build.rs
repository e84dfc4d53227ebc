//! Passes the git commit to `keel-sim` for the build line of its traces,
//! marked `-dirty` when the simulated code differs from the commit.

use std::process::Command;

/// The code a simulation runs: a change here changes traces.
const SOURCES: [&str; 4] = ["../sim/src", "../raft-node/src", "../log-core/src", "../jepsen-style/src"];

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=KEEL_GIT_COMMIT");
    if let Ok(commit) = std::env::var("KEEL_GIT_COMMIT") {
        println!("cargo:rustc-env=KEEL_GIT_COMMIT={commit}");
        return;
    }
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            if let Some(path) = git(&["rev-parse", "--git-path", &reference]) {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(SOURCES);
    let dirty = git(&status).is_some_and(|changes| !changes.is_empty());
    println!("cargo:rustc-env=KEEL_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
}
