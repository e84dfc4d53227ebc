//! One raft entry as one on-disk record: `[len u32][crc32c u32][payload]`,
//! the checksum over the payload, all integers little-endian.
//!
//! Payload: `index u64, term u64, entry_type u8, context_len u32, context, data`.

use bytes::Bytes;
use protobuf::ProtobufEnum;
use raft::eraftpb::{Entry, EntryType};

use super::codec::Reader;

pub(crate) const HEADER_LEN: usize = 8;
const FIXED_PAYLOAD_LEN: usize = 8 + 8 + 1 + 4;
/// Larger lengths in a header are garbage; rejecting them keeps a corrupt
/// header from making recovery allocate gigabytes.
pub(crate) const MAX_PAYLOAD_LEN: usize = 1 << 30;

/// The record header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) payload_len: usize,
    crc: u32,
}

impl Header {
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, &'static str> {
        let [l0, l1, l2, l3, c0, c1, c2, c3] = *bytes;
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let payload_len = len as usize;
        if !(FIXED_PAYLOAD_LEN..=MAX_PAYLOAD_LEN).contains(&payload_len) {
            return Err("record length out of range");
        }
        Ok(Self { payload_len, crc })
    }
}

/// The payload length of `entry`'s record.
pub(crate) fn payload_len(entry: &Entry) -> usize {
    FIXED_PAYLOAD_LEN + entry.context.len() + entry.data.len()
}

/// Appends `entry`'s record to `out`. The caller checked `payload_len <= MAX_PAYLOAD_LEN`.
pub(crate) fn encode(entry: &Entry, out: &mut Vec<u8>) {
    let len = payload_len(entry);
    debug_assert!(len <= MAX_PAYLOAD_LEN);
    out.reserve(HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let payload_at = out.len();
    out.extend_from_slice(&entry.index.to_le_bytes());
    out.extend_from_slice(&entry.term.to_le_bytes());
    out.push(entry.entry_type.value() as u8);
    out.extend_from_slice(&(entry.context.len() as u32).to_le_bytes());
    out.extend_from_slice(&entry.context);
    out.extend_from_slice(&entry.data);
    let crc = crc32c::crc32c(&out[payload_at..]);
    out[crc_at..payload_at].copy_from_slice(&crc.to_le_bytes());
}

/// Verifies and decodes a payload; `data` and `context` share its buffer.
pub(crate) fn decode(header: &Header, payload: Bytes) -> Result<Entry, &'static str> {
    debug_assert_eq!(payload.len(), header.payload_len);
    if crc32c::crc32c(&payload) != header.crc {
        return Err("checksum mismatch");
    }
    let mut r = Reader::new(&payload);
    let fields = (|| Some((r.u64()?, r.u64()?, r.u8()?, r.u32()? as usize)))();
    let (index, term, entry_type, context_len) = fields.ok_or("payload too short")?;
    let entry_type = EntryType::from_i32(i32::from(entry_type)).ok_or("unknown entry type")?;
    if context_len > r.remaining() {
        return Err("context length beyond payload");
    }
    Ok(Entry {
        index,
        term,
        entry_type,
        context: payload.slice(FIXED_PAYLOAD_LEN..FIXED_PAYLOAD_LEN + context_len),
        data: payload.slice(FIXED_PAYLOAD_LEN + context_len..),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, context: &[u8], data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            entry_type: EntryType::EntryConfChangeV2,
            context: Bytes::copy_from_slice(context),
            data: Bytes::copy_from_slice(data),
            ..Default::default()
        }
    }

    fn split(record: &[u8]) -> (Header, Bytes) {
        let header = Header::parse(record[..HEADER_LEN].try_into().unwrap()).unwrap();
        (header, Bytes::copy_from_slice(&record[HEADER_LEN..]))
    }

    #[test]
    fn round_trips() {
        let e = entry(7, 3, b"ctx", b"some data");
        let mut buf = Vec::new();
        encode(&e, &mut buf);
        assert_eq!(buf.len(), HEADER_LEN + payload_len(&e));
        let (header, payload) = split(&buf);
        assert_eq!(decode(&header, payload).unwrap(), e);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode(&entry(1, 1, b"c", b"payload bytes"), &mut buf);
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let Ok(header) = Header::parse(bad[..HEADER_LEN].try_into().unwrap()) else {
                continue;
            };
            if header.payload_len != bad.len() - HEADER_LEN {
                continue; // a length flip is caught by the reader's bounds
            }
            let payload = Bytes::copy_from_slice(&bad[HEADER_LEN..]);
            assert!(decode(&header, payload).is_err(), "bit {bit} undetected");
        }
    }

    #[test]
    fn garbage_lengths_are_rejected() {
        assert!(Header::parse(&[0; 8]).is_err());
        assert!(Header::parse(&[0xff; 8]).is_err());
    }
}
