//! Invariants checked over a run's trace, beyond the client-visible history
//! the checker judges.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use raft_node::group_id::GroupId;
use raft_node::replica::AppliedHook;

/// Raft's election safety: at most one leader per term of each group. Every
/// broker logs "became leader at term T" with its raft id and group; two
/// different ids for one (group, term) is a violation, reported one per line.
pub fn one_leader_per_term(trace: &str) -> Vec<String> {
    let mut leaders: BTreeMap<(&str, u64), BTreeSet<u64>> = BTreeMap::new();
    for line in trace.lines().filter(|l| l.contains("became leader at term")) {
        let field = |key: &str| line.split(", ").find_map(|kv| kv.strip_prefix(key));
        let parsed = (field("group: "), field("term: ").and_then(|t| t.parse().ok()), field("raft_id: "));
        if let (Some(group), Some(term), Some(Ok(id))) = (parsed.0, parsed.1, parsed.2.map(str::parse::<u64>)) {
            leaders.entry((group, term)).or_default().insert(id);
        }
    }
    leaders
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((group, term), ids)| format!("invariant: group {group} had leaders {ids:?} in term {term}"))
        .collect()
}

/// A broker in critical trouble (a replica failed and stopped serving) is a
/// bug unless an injected disk fault explains it: a replica whose disk lost
/// power must stop, and so must one whose log keeps failing its checksum
/// while `corrupt_reads` are injected (it reopens later). Reported one per
/// line, at most three.
pub fn no_critical_trouble(trace: &str, corrupt_reads: bool) -> Vec<String> {
    let injected = |line: &str| {
        line.contains("power failure")
            || (corrupt_reads && (line.contains("CorruptRecord") || line.contains("corrupt record")))
    };
    trace
        .lines()
        .filter(|l| l.contains(" CRIT ") && !injected(l))
        .take(3)
        .map(|l| format!("invariant: {}", l.trim()))
        .collect()
}

/// Committed entries never change, and every replica's committed log is a
/// prefix of the others': checked as the run goes, from every entry any
/// replica applies. The first replica to apply an index fixes its term and
/// bytes; any later apply of that index, on any broker (again after a
/// restart too), must match. And while a broker runs, each of its replicas
/// applies in increasing index order: its commit point (the high watermark)
/// never moves back.
#[derive(Default)]
pub struct CommittedEntries {
    state: Mutex<Committed>,
}

#[derive(Default)]
struct Committed {
    /// (group, index) -> (term, data, the broker that applied it first).
    entries: BTreeMap<(String, u64), (u64, Bytes, u8)>,
    violations: Vec<String>,
}

impl CommittedEntries {
    /// The hook for broker `broker`'s replicas, for one run of the broker
    /// (a restart takes a new one: it may apply again from its stored commit).
    pub fn hook(self: &Arc<Self>, broker: u8) -> AppliedHook {
        let this = self.clone();
        let last_applied = Mutex::new(BTreeMap::<String, u64>::new());
        AppliedHook::new(move |group, entries| {
            let mut last_applied = last_applied.lock().unwrap_or_else(PoisonError::into_inner);
            this.applied(broker, group, entries, last_applied.entry(group.to_string()).or_default())
        })
    }

    fn applied(&self, broker: u8, group: &GroupId, entries: &[raft::eraftpb::Entry], last_applied: &mut u64) {
        if entries.is_empty() {
            // The replica (re)opened on this broker: it applies from its own start.
            *last_applied = 0;
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Committed { entries: known, violations } = &mut *state;
        for entry in entries {
            if entry.index <= *last_applied {
                violations.push(format!(
                    "invariant: broker {broker} applied group {group} index {} after index {}: its commit moved back",
                    entry.index, *last_applied
                ));
            }
            *last_applied = entry.index;
            let key = (group.to_string(), entry.index);
            match known.get(&key) {
                None => {
                    known.insert(key, (entry.term, entry.data.clone(), broker));
                }
                Some((term, data, first)) if *term != entry.term || *data != entry.data => violations.push(format!(
                    "invariant: group {} committed index {} changed: term {term} ({} bytes) applied by broker {first}, \
                     term {} ({} bytes) by broker {broker}",
                    key.0,
                    key.1,
                    data.len(),
                    entry.term,
                    entry.data.len()
                )),
                Some(_) => {}
            }
        }
    }

    /// The breaks seen so far, at most `limit`.
    pub fn violations(&self, limit: usize) -> Vec<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.violations.iter().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(term: u64, id: u64, group: &str) -> String {
        format!(
            "     1.000 INFO became leader at term {term}, term: {term}, raft_id: {id}, group: {group}, node: {id}, broker: {id}\n"
        )
    }

    #[test]
    fn two_leaders_in_one_term_of_one_group_are_reported() {
        let trace = [line(1, 1, "metadata"), line(1, 2, "metadata"), line(2, 3, "metadata")].concat();
        assert_eq!(one_leader_per_term(&trace), ["invariant: group metadata had leaders {1, 2} in term 1"]);
    }

    #[test]
    fn critical_trouble_is_reported_unless_an_injected_disk_fault_explains_it() {
        let failed = |error: &str| {
            format!("     2.000 CRIT partition replica failed; it stops serving, error: {error}, group: g-0, node: 1\n")
        };
        let power = failed("storage: I/O on p-0.log: power failure");
        let corrupt = failed("raft failed: unexpected error: Store(Other(CorruptRecord { file: \"p-0.log\" }))");
        let bug = failed("storage: commit 6 is beyond the last index 2");
        let trace = [power.as_str(), &corrupt, &bug].concat();
        let found = no_critical_trouble(&trace, true);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("commit 6 is beyond"), "{found:?}");
        let found = no_critical_trouble(&trace, false);
        assert_eq!(found.len(), 2, "a corrupt record without injected corruption is a bug: {found:?}");
        assert!(no_critical_trouble(&power, false).is_empty());
    }

    fn entry(index: u64, term: u64, data: &'static [u8]) -> raft::eraftpb::Entry {
        raft::eraftpb::Entry { index, term, data: Bytes::from_static(data), ..Default::default() }
    }

    #[test]
    fn a_committed_entry_applied_differently_anywhere_is_reported() {
        let committed = Arc::new(CommittedEntries::default());
        let group = GroupId::Metadata;
        let (one, two) = (committed.hook(1), committed.hook(2));
        one.call(&group, &[entry(1, 1, b"a"), entry(2, 1, b"b")]);
        two.call(&group, &[entry(1, 1, b"a")]);
        // Again after a restart (a new hook): the same entries are fine.
        let one = committed.hook(1);
        one.call(&group, &[entry(2, 1, b"b")]);
        assert!(committed.violations(10).is_empty());
        two.call(&group, &[entry(2, 2, b"b"), entry(3, 2, b"c")]);
        one.call(&group, &[entry(3, 2, b"x")]);
        let found = committed.violations(10);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("index 2 changed: term 1"), "{found:?}");
        assert!(found[1].contains("index 3 changed"), "{found:?}");
    }

    #[test]
    fn a_replica_applying_an_index_again_while_it_runs_is_reported() {
        let committed = Arc::new(CommittedEntries::default());
        let hook = committed.hook(1);
        let (metadata, partition) = (GroupId::Metadata, GroupId::Partition { topic: [1; 16], partition: 0 });
        hook.call(&metadata, &[entry(1, 1, b"a"), entry(2, 1, b"b")]);
        hook.call(&partition, &[entry(1, 1, b"x")]);
        assert!(committed.violations(10).is_empty(), "groups are apart");
        hook.call(&metadata, &[entry(2, 1, b"b")]);
        let found = committed.violations(10);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("index 2 after index 2"), "{found:?}");
        // A replica opened again (moved back here) applies from its own start.
        hook.call(&partition, &[]);
        hook.call(&partition, &[entry(1, 1, b"x")]);
        assert_eq!(committed.violations(10).len(), 1, "nothing more");
    }

    #[test]
    fn successive_terms_and_different_groups_are_fine() {
        let trace =
            [line(1, 1, "metadata"), line(2, 2, "metadata"), line(1, 3, "b10da48c-0"), line(1, 3, "b10da48c-0")]
                .concat();
        assert!(one_leader_per_term(&trace).is_empty());
        assert!(one_leader_per_term("").is_empty());
    }
}
