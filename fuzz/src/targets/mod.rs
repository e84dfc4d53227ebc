//! The fuzz targets: each takes the fuzzer's bytes and panics when its property fails.

pub mod batch;
pub mod kafka;
pub mod models;
pub mod server;
pub mod storage;
pub mod transport;

use arbitrary::Unstructured;

/// Applies up to eight mutations read from `u` to `bytes`: bit flips, byte writes, inserts,
/// deletes, truncation, and integers fuzzers like (lengths and counts at their limits, a
/// five-byte varint) written over whatever is there. Returns whether anything changed.
pub fn mutate(u: &mut Unstructured<'_>, bytes: &mut Vec<u8>) -> bool {
    let before = bytes.clone();
    let count = u.int_in_range(0..=8u8).unwrap_or(0);
    for _ in 0..count {
        let Ok(kind) = u.int_in_range(0..=6u8) else { break };
        let at = if bytes.is_empty() { 0 } else { u.choose_index(bytes.len() + 1).unwrap_or(0) };
        match kind {
            0 if at < bytes.len() => bytes[at] ^= 1 << u.int_in_range(0..=7u8).unwrap_or(0),
            1 if at < bytes.len() => bytes[at] = u.arbitrary().unwrap_or(0xff),
            2 => {
                let n = u.int_in_range(1..=16usize).unwrap_or(1);
                let insert: Vec<u8> = (0..n).map(|_| u.arbitrary().unwrap_or(0)).collect();
                bytes.splice(at..at, insert);
            }
            3 => {
                let n = u.int_in_range(1..=16usize).unwrap_or(1);
                bytes.drain(at..(at + n).min(bytes.len()));
            }
            4 => bytes.truncate(at),
            5 => {
                const INT32S: [i32; 8] = [i32::MAX, -1, i32::MIN, 0, 1, 0x1_0001, 0x7fff, 0x10_0000];
                let value = INT32S[u.choose_index(INT32S.len()).unwrap_or(0)];
                overwrite(bytes, at, &value.to_be_bytes());
            }
            _ => overwrite(bytes, at, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        }
    }
    *bytes != before
}

fn overwrite(bytes: &mut [u8], at: usize, with: &[u8]) {
    for (i, b) in with.iter().enumerate() {
        if let Some(slot) = bytes.get_mut(at + i) {
            *slot = *b;
        }
    }
}
