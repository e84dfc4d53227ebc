//! Decoding untrusted Kafka messages without allocations sized by forged counts.
//!
//! kafka-protocol 0.18 decodes an array with `Vec::with_capacity(count)` before it reads any
//! element, `count` coming straight from the wire (an int32, or an unsigned varint for compact
//! arrays). A ten-byte frame can so ask for 2^31 elements of a 100-byte struct; the allocation
//! fails, and allocation failure aborts the process (it is not a panic).
//!
//! Every array element occupies at least one byte on the wire, in every message and version the
//! crate generates (checked over its generated decoders: the structs that are empty at some
//! version are only decoded at versions where they are not), so a count larger than the bytes
//! left is invalid anyway. The crate reads every integer through `bytes::Buf::try_get_*`, which
//! our `ByteBuf` overrides in a first, checking pass:
//! - an unsigned varint (compact array, string and bytes lengths, tagged field counts and sizes)
//!   above both [`SMALL_COUNT`] and the bytes left rejects the message: no valid message has one
//!   (short of an absurd tag number);
//! - an int32 above both is replaced by `max(bytes left, SMALL_COUNT) + 1`. Had it been an array
//!   count or a bytes length, the pass now fails for want of bytes, as the real decode would; had
//!   it been a plain field (a timeout, a max_bytes), only that value is off and the decoders'
//!   control flow, which depends on versions and counts alone, is unchanged.
//!
//! A checking pass that replaced nothing produced the exact message. Otherwise the bytes are
//! decoded again by the crate alone, which now meets only counts the checking pass saw to be
//! honest.

use std::ops::Range;

use bytes::{Buf, Bytes, TryGetError};
use kafka_protocol::protocol::buf::ByteBuf;
use kafka_protocol::protocol::Decodable;

/// Counts up to this are let through whatever follows: at most a few MiB of capacity.
pub const SMALL_COUNT: usize = 1 << 16;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("a length of {claimed} with only {left} bytes left")]
    ForgedLength { claimed: u64, left: usize },
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Decodes a `T` at `version` from the front of `buf`, advancing `buf` past it.
pub fn decode_bounded<T: Decodable>(buf: &mut Bytes, version: i16) -> Result<T, DecodeError> {
    let mut guard = CountGuard { bytes: buf.clone(), clamped: false, forged: None };
    let checked = T::decode(&mut guard, version);
    if let Some(forged) = guard.forged {
        return Err(forged);
    }
    let checked = checked.map_err(malformed)?;
    if !guard.clamped {
        *buf = guard.bytes;
        return Ok(checked);
    }
    T::decode(buf, version).map_err(malformed)
}

// The crate's errors are `anyhow` chains; `{:#}` prints the whole chain.
fn malformed(error: impl std::fmt::Display) -> DecodeError {
    DecodeError::Malformed(format!("{error:#}"))
}

/// The checking pass's view of the bytes.
struct CountGuard {
    bytes: Bytes,
    /// An int32 was replaced: the decoded value may be off.
    clamped: bool,
    /// A varint no valid message holds was met.
    forged: Option<DecodeError>,
}

impl CountGuard {
    /// The unsigned varint at the front, as the crate decodes it, and its length in bytes.
    fn peek_varint(&self) -> Option<(u32, usize)> {
        let mut value = 0u32;
        for (i, &b) in self.bytes.iter().take(5).enumerate() {
            value |= u32::from(b & 0x7F) << (i * 7);
            if b < 0x80 || i == 4 {
                return Some((value, i + 1));
            }
        }
        None
    }
}

impl Buf for CountGuard {
    fn remaining(&self) -> usize {
        self.bytes.remaining()
    }

    fn chunk(&self) -> &[u8] {
        self.bytes.chunk()
    }

    fn advance(&mut self, cnt: usize) {
        self.bytes.advance(cnt)
    }

    // Every varint byte is read through here (so are booleans, which real clients send as 0
    // or 1: one byte, too small to check).
    fn try_get_u8(&mut self) -> Result<u8, TryGetError> {
        if let Some((value, len)) = self.peek_varint() {
            let left = self.bytes.len() - len;
            let count = value as usize;
            if count > SMALL_COUNT && count - 1 > left {
                self.forged = Some(DecodeError::ForgedLength { claimed: u64::from(value), left });
                return Err(TryGetError { requested: count, available: left });
            }
        }
        self.bytes.try_get_u8()
    }

    fn try_get_i32(&mut self) -> Result<i32, TryGetError> {
        let value = self.bytes.try_get_i32()?;
        let left = self.bytes.len();
        match usize::try_from(value) {
            Ok(count) if count > SMALL_COUNT && count > left => {
                self.clamped = true;
                Ok(i32::try_from(left.max(SMALL_COUNT) + 1).unwrap_or(value))
            }
            _ => Ok(value),
        }
    }
}

impl ByteBuf for CountGuard {
    // The crate peeks only while decoding a request header's prefix, which we read ourselves;
    // clamp the range rather than panic should that change.
    fn peek_bytes(&mut self, r: Range<usize>) -> Bytes {
        let end = r.end.min(self.bytes.len());
        self.bytes.slice(r.start.min(end)..end)
    }

    fn get_bytes(&mut self, size: usize) -> Bytes {
        self.bytes.split_to(size.min(self.bytes.len()))
    }
}
