//! Bugs planted on purpose, to prove that the simulator and the jepsen-style
//! harness can fail (docs/VERIFICATION.md records what catches each). They
//! exist only in builds with the `planted-bugs` feature, which production
//! builds never enable; such a build plants the one bug named by the
//! `KEEL_PLANTED_BUG` environment variable, or none.

/// The planted bugs, each named as `KEEL_PLANTED_BUG` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// acks=all is answered once the leader's own write is durable, before
    /// the raft commit.
    AckBeforeCommit,
    /// The log's sync does nothing, yet raft is told the entries are durable.
    SkipSync,
    /// A replica restarted on a non-empty log answers produce with the base
    /// offset plus one once it leads.
    OffsetAfterRestart,
    /// Fetch serves entries past the high watermark (not yet committed).
    FetchAboveHw,
    /// The leader's idempotence window is one batch short: it misses each
    /// producer's newest batch, so a retry of that batch is written again.
    DedupWindowOffByOne,
    /// A broker a move takes a replica off deletes it when the move starts,
    /// before the new configuration commits, and rejoins empty as the same member.
    RemoveBeforeCommit,
}

impl Bug {
    pub const ALL: [Bug; 6] = [
        Bug::AckBeforeCommit,
        Bug::SkipSync,
        Bug::OffsetAfterRestart,
        Bug::FetchAboveHw,
        Bug::DedupWindowOffByOne,
        Bug::RemoveBeforeCommit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeCommit => "ack-before-commit",
            Bug::SkipSync => "skip-sync",
            Bug::OffsetAfterRestart => "offset-after-restart",
            Bug::FetchAboveHw => "fetch-above-hw",
            Bug::DedupWindowOffByOne => "dedup-window-off-by-one",
            Bug::RemoveBeforeCommit => "remove-before-commit",
        }
    }
}

/// The bug `KEEL_PLANTED_BUG` names, checked: binaries call this at startup
/// so a misspelt name is an error, not a clean run that proves nothing.
pub fn from_env() -> Result<Option<Bug>, String> {
    let Ok(name) = std::env::var("KEEL_PLANTED_BUG") else { return Ok(None) };
    let names = || Bug::ALL.map(Bug::name).join(", ");
    if !cfg!(feature = "planted-bugs") {
        return Err(format!("KEEL_PLANTED_BUG={name}, but this build has no planted bugs (feature planted-bugs)"));
    }
    match Bug::ALL.into_iter().find(|b| b.name() == name) {
        Some(bug) => Ok(Some(bug)),
        None => Err(format!("KEEL_PLANTED_BUG={name} names no planted bug; one of: {}", names())),
    }
}

/// Whether `bug` is planted in this process.
#[cfg(feature = "planted-bugs")]
pub fn planted(bug: Bug) -> bool {
    static ACTIVE: std::sync::OnceLock<Option<Bug>> = std::sync::OnceLock::new();
    *ACTIVE.get_or_init(|| from_env().ok().flatten()) == Some(bug)
}

/// Whether `bug` is planted in this process: never, in this build.
#[cfg(not(feature = "planted-bugs"))]
#[inline(always)]
pub fn planted(_bug: Bug) -> bool {
    false
}
