//! The wire format between brokers. All integers are big-endian.
//!
//! A connection is one-way: the dialling broker writes, the accepting broker
//! reads. It opens with a handshake naming the sender:
//!
//! ```text
//! handshake := magic u32 (b"KEEL") | version u32 (1) | sender node id u64     (16 bytes)
//! ```
//!
//! and then carries frames, each holding every payload one write round had:
//!
//! ```text
//! frame     := body_len u32 | crc32c(body) u32 | body
//! body      := count u32 | entry * count                 (count >= 1)
//! entry     := payload_len u32 | payload
//! ```
//!
//! `body_len` is checked against the configured cap before anything is
//! allocated for the body; the entries must fill the body exactly.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const MAGIC: u32 = u32::from_be_bytes(*b"KEEL");
pub const VERSION: u32 = 1;
pub const HANDSHAKE_LEN: usize = 16;
/// `body_len` and the checksum.
pub const HEADER_LEN: usize = 8;
/// `count`: the part of a body that is not entries.
pub const BODY_OVERHEAD: usize = 4;
/// `payload_len`: what each payload adds besides its own bytes.
pub const ENTRY_OVERHEAD: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported version {0}")]
    UnsupportedVersion(u32),
    #[error("frame body of {len} bytes exceeds the cap of {max}")]
    TooLarge { len: u32, max: u32 },
    #[error("frame body of {0} bytes is shorter than its count")]
    TooShort(u32),
    #[error("checksum mismatch: header says {expected:#010x}, body has {actual:#010x}")]
    BadChecksum { expected: u32, actual: u32 },
    #[error("frame with no payloads")]
    Empty,
    #[error("entry {index} of {count} runs past the end of the body")]
    Truncated { index: u32, count: u32 },
    #[error("{0} bytes left over after the last entry")]
    TrailingBytes(usize),
}

pub fn encode_handshake(node_id: u64) -> [u8; HANDSHAKE_LEN] {
    let mut out = [0; HANDSHAKE_LEN];
    out[..4].copy_from_slice(&MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&VERSION.to_be_bytes());
    out[8..].copy_from_slice(&node_id.to_be_bytes());
    out
}

/// The sender's node id.
pub fn decode_handshake(bytes: [u8; HANDSHAKE_LEN]) -> Result<u64, FrameError> {
    let mut buf = &bytes[..];
    let magic = buf.get_u32();
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let version = buf.get_u32();
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    Ok(buf.get_u64())
}

/// The body size of a frame holding payloads of these lengths.
pub fn body_len(payload_lens: impl IntoIterator<Item = usize>) -> usize {
    BODY_OVERHEAD + payload_lens.into_iter().map(|len| ENTRY_OVERHEAD + len).sum::<usize>()
}

/// Appends one frame holding `payloads` to `out`. The caller keeps the body
/// within the cap it and the receiver agree on (and so within u32).
pub fn encode_frame(payloads: &[Bytes], out: &mut BytesMut) {
    assert!(!payloads.is_empty(), "a frame holds at least one payload");
    let len = body_len(payloads.iter().map(Bytes::len));
    let len32 = u32::try_from(len).expect("frame body exceeds u32: the caller must cap batches");
    out.reserve(HEADER_LEN + len);
    let start = out.len();
    out.put_u32(len32);
    out.put_u32(0); // the checksum, once the body is written
    out.put_u32(payloads.len() as u32); // fewer payloads than body bytes
    for payload in payloads {
        out.put_u32(payload.len() as u32); // each within the body
        out.put_slice(payload);
    }
    let crc = crc32c::crc32c(&out[start + HEADER_LEN..]);
    out[start + 4..start + HEADER_LEN].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(out.len() - start, HEADER_LEN + len);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub body_len: u32,
    pub crc: u32,
}

impl FrameHeader {
    /// Validates the length before the reader allocates `body_len` bytes.
    pub fn parse(bytes: [u8; HEADER_LEN], max_body_len: u32) -> Result<Self, FrameError> {
        let mut buf = &bytes[..];
        let header = FrameHeader { body_len: buf.get_u32(), crc: buf.get_u32() };
        if header.body_len > max_body_len {
            return Err(FrameError::TooLarge { len: header.body_len, max: max_body_len });
        }
        if (header.body_len as usize) < BODY_OVERHEAD {
            return Err(FrameError::TooShort(header.body_len));
        }
        Ok(header)
    }
}

/// The payloads of a frame, as slices of `body` (no copies).
pub fn decode_body(header: FrameHeader, body: Bytes) -> Result<Vec<Bytes>, FrameError> {
    assert_eq!(body.len(), header.body_len as usize, "the reader reads exactly body_len bytes");
    let actual = crc32c::crc32c(&body);
    if actual != header.crc {
        return Err(FrameError::BadChecksum { expected: header.crc, actual });
    }
    let mut rest = body;
    let count = rest.get_u32(); // parse() guaranteed the 4 bytes
    if count == 0 {
        return Err(FrameError::Empty);
    }
    // Every entry takes at least ENTRY_OVERHEAD bytes, which bounds the
    // allocation by the body already read, whatever `count` claims.
    let mut payloads = Vec::with_capacity((count as usize).min(rest.len() / ENTRY_OVERHEAD));
    for index in 0..count {
        if rest.len() < ENTRY_OVERHEAD {
            return Err(FrameError::Truncated { index, count });
        }
        let len = rest.get_u32() as usize;
        if rest.len() < len {
            return Err(FrameError::Truncated { index, count });
        }
        payloads.push(rest.split_to(len));
    }
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes(rest.len()));
    }
    Ok(payloads)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 1 << 20;

    /// Decodes `bytes` as a sequence of whole frames, as the reader does.
    fn decode_all(mut bytes: &[u8], max: u32) -> Result<Vec<Vec<Bytes>>, FrameError> {
        let mut frames = Vec::new();
        while bytes.len() >= HEADER_LEN {
            let header = FrameHeader::parse(bytes[..HEADER_LEN].try_into().unwrap(), max)?;
            bytes = &bytes[HEADER_LEN..];
            let len = header.body_len as usize;
            if bytes.len() < len {
                break;
            }
            frames.push(decode_body(header, Bytes::copy_from_slice(&bytes[..len]))?);
            bytes = &bytes[len..];
        }
        Ok(frames)
    }

    fn payloads(lens: &[usize]) -> Vec<Bytes> {
        lens.iter().enumerate().map(|(i, &len)| Bytes::from(vec![i as u8; len])).collect()
    }

    fn encoded(payloads: &[Bytes]) -> BytesMut {
        let mut out = BytesMut::new();
        encode_frame(payloads, &mut out);
        out
    }

    #[test]
    fn frames_round_trip() {
        let first = payloads(&[0, 1, 300]);
        let second = payloads(&[5]);
        let mut out = encoded(&first);
        encode_frame(&second, &mut out);
        assert_eq!(out.len(), 2 * HEADER_LEN + body_len([0, 1, 300]) + body_len([5]));
        assert_eq!(decode_all(&out, MAX), Ok(vec![first, second]));
    }

    #[test]
    fn handshake_round_trips_and_checks_magic_and_version() {
        assert_eq!(decode_handshake(encode_handshake(u64::MAX - 3)), Ok(u64::MAX - 3));
        let mut bad = encode_handshake(1);
        bad[0] = b'X';
        assert!(matches!(decode_handshake(bad), Err(FrameError::BadMagic(_))));
        let mut newer = encode_handshake(1);
        newer[7] = 2;
        assert_eq!(decode_handshake(newer), Err(FrameError::UnsupportedVersion(2)));
    }

    #[test]
    fn the_cap_is_checked_on_the_header() {
        let frame = encoded(&payloads(&[100]));
        let header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
        let len = body_len([100]) as u32;
        assert!(FrameHeader::parse(header, len).is_ok());
        assert_eq!(FrameHeader::parse(header, len - 1), Err(FrameError::TooLarge { len, max: len - 1 }));
        let mut huge = header;
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(FrameHeader::parse(huge, MAX), Err(FrameError::TooLarge { .. })));
        let mut tiny = header;
        tiny[..4].copy_from_slice(&3u32.to_be_bytes());
        assert_eq!(FrameHeader::parse(tiny, MAX), Err(FrameError::TooShort(3)));
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let frame = encoded(&payloads(&[3, 0, 7]));
        for bit in 0..frame.len() * 8 {
            let mut corrupt = frame.to_vec();
            corrupt[bit / 8] ^= 1 << (bit % 8);
            // A flip in the length either fails its checks or leaves the frame
            // incomplete; anywhere else the checksum catches it.
            let decoded = decode_all(&corrupt, MAX);
            assert!(decoded.as_ref().map_or(true, Vec::is_empty), "bit {bit}: {decoded:?}");
        }
    }

    #[test]
    fn truncated_frames_are_incomplete_not_errors() {
        let frame = encoded(&payloads(&[3, 9]));
        for cut in 0..frame.len() {
            assert_eq!(decode_all(&frame[..cut], MAX), Ok(vec![]), "cut at {cut}");
        }
    }

    /// A body with a valid checksum but inconsistent contents.
    fn sealed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let empty = sealed(&0u32.to_be_bytes());
        assert_eq!(decode_all(&empty, MAX), Err(FrameError::Empty));
        let count_too_high = sealed(&[0, 0, 0, 2, 0, 0, 0, 1, 9]);
        assert_eq!(decode_all(&count_too_high, MAX), Err(FrameError::Truncated { index: 1, count: 2 }));
        let huge_count = sealed(&[255, 255, 255, 255]);
        assert_eq!(decode_all(&huge_count, MAX), Err(FrameError::Truncated { index: 0, count: u32::MAX }));
        let entry_too_long = sealed(&[0, 0, 0, 1, 0, 0, 0, 5, 9]);
        assert_eq!(decode_all(&entry_too_long, MAX), Err(FrameError::Truncated { index: 0, count: 1 }));
        let trailing = sealed(&[0, 0, 0, 1, 0, 0, 0, 1, 9, 9]);
        assert_eq!(decode_all(&trailing, MAX), Err(FrameError::TrailingBytes(1)));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_valid_frames_round_trip() {
        bolero::check!().with_type::<Vec<u8>>().for_each(|bytes: &Vec<u8>| {
            let Ok(frames) = decode_all(bytes, 4096) else { return };
            let mut again = BytesMut::new();
            for frame in &frames {
                encode_frame(frame, &mut again);
            }
            // Whatever decodes is canonical: re-encoding gives the same prefix.
            assert_eq!(&bytes[..again.len()], &again[..]);
        });
    }
}
