//! A bounded cache of the most recent entries: the tail of the log is what
//! raft reads back (to send to followers, to apply), so it avoids the disk.

use std::collections::VecDeque;

use raft::eraftpb::Entry;

/// Bookkeeping bytes charged per entry on top of its data and context.
const ENTRY_OVERHEAD: usize = 64;

/// A contiguous run of entries ending at the log's last index.
#[derive(Debug)]
pub(crate) struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_bytes: usize,
}

fn cost(entry: &Entry) -> usize {
    ENTRY_OVERHEAD + entry.data.len() + entry.context.len()
}

impl EntryCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self { entries: VecDeque::new(), bytes: 0, max_bytes }
    }

    /// The first cached index, if any.
    pub(crate) fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// Appends entries that directly follow the cached ones (the log
    /// truncated the cache first if they overwrite a suffix), evicting the oldest.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        if let (Some(last), Some(first)) = (self.entries.back(), entries.first()) {
            if last.index + 1 != first.index {
                self.clear();
            }
        }
        for entry in entries {
            self.bytes += cost(entry);
            self.entries.push_back(entry.clone());
        }
        while self.bytes > self.max_bytes {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes -= cost(&old);
        }
    }

    /// Forgets `index` and everything after it.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.index >= index) {
            if let Some(old) = self.entries.pop_back() {
                self.bytes -= cost(&old);
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The cached entries in `[low, high)`; the caller checked `low >= first_index()`.
    pub(crate) fn range(&self, low: u64, high: u64) -> impl Iterator<Item = &Entry> {
        let skip = self.first_index().map_or(0, |first| (low - first) as usize);
        self.entries.iter().skip(skip).take_while(move |e| e.index < high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, size: usize) -> Entry {
        Entry { index, data: vec![0; size].into(), ..Default::default() }
    }

    #[test]
    fn evicts_oldest_and_truncates() {
        let mut cache = EntryCache::new(3 * (ENTRY_OVERHEAD + 10));
        cache.append(&[entry(1, 10), entry(2, 10), entry(3, 10), entry(4, 10)]);
        assert_eq!(cache.first_index(), Some(2));
        let got: Vec<u64> = cache.range(3, 10).map(|e| e.index).collect();
        assert_eq!(got, vec![3, 4]);
        cache.truncate_from(3);
        cache.append(&[entry(3, 10)]);
        assert_eq!(cache.range(2, 4).count(), 2);
        cache.append(&[entry(9, 10)]);
        assert_eq!(cache.first_index(), Some(9));
    }
}
