//! The terms of the log as runs: the first index of each term, so `term(idx)`
//! never touches disk. A raft log's terms never decrease along the log.

/// `(first index, term)` of each run, ascending by index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TermRuns {
    runs: Vec<(u64, u64)>,
}

impl TermRuns {
    /// Records that `index` (after every recorded index) has `term`.
    pub(crate) fn push(&mut self, index: u64, term: u64) {
        debug_assert!(self.runs.last().is_none_or(|&(first, _)| first < index));
        if self.runs.last().is_none_or(|&(_, t)| t != term) {
            self.runs.push((index, term));
        }
    }

    /// The term of `index`, if it is at or after the first recorded index. The
    /// caller knows where the log ends.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        let after = self.runs.partition_point(|&(first, _)| first <= index);
        after.checked_sub(1).map(|i| self.runs[i].1)
    }

    /// Forgets `index` and everything after it.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        let keep = self.runs.partition_point(|&(first, _)| first < index);
        self.runs.truncate(keep);
    }

    /// Forgets the runs that end before `index`.
    pub(crate) fn discard_before(&mut self, index: u64) {
        let covering = self.runs.partition_point(|&(first, _)| first <= index);
        self.runs.drain(..covering.saturating_sub(1));
    }

    /// The runs that intersect `[first, last]`, the first clipped to start at `first`.
    pub(crate) fn within(&self, first: u64, last: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if let Some(term) = self.term(first).filter(|_| first <= last) {
            out.push((first, term));
            let from = self.runs.partition_point(|&(start, _)| start <= first);
            out.extend(self.runs[from..].iter().take_while(|&&(start, _)| start <= last));
        }
        out
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.runs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_answer_terms_and_truncate() {
        let mut runs = TermRuns::default();
        for (index, term) in [(5, 1), (6, 1), (7, 2), (8, 4), (9, 4)] {
            runs.push(index, term);
        }
        assert_eq!(runs.term(4), None);
        assert_eq!(runs.term(6), Some(1));
        assert_eq!(runs.term(7), Some(2));
        assert_eq!(runs.term(100), Some(4));
        assert_eq!(runs.within(6, 8), vec![(6, 1), (7, 2), (8, 4)]);
        assert_eq!(runs.within(9, 8), vec![]);
        runs.truncate_from(8);
        assert_eq!(runs.term(8), Some(2));
        runs.push(8, 3);
        runs.discard_before(7);
        assert_eq!(runs.term(5), None);
        assert_eq!(runs.term(7), Some(2));
        assert_eq!(runs.term(8), Some(3));
        runs.clear();
        assert_eq!(runs.term(8), None);
    }
}
