//! A zero-copy view of a Kafka record batch (magic v2) over `bytes::Bytes`.
//!
//! The broker never decodes records on the produce or fetch path: it validates
//! the 61-byte batch header, checks the CRC32C, stamps the base offset and the
//! partition leader epoch in place, and stores the bytes as they came.
//!
//! Layout (big-endian), from the Kafka protocol's "Record Batch" definition:
//!
//! ```text
//! 0  baseOffset int64         12 partitionLeaderEpoch int32   16 magic int8
//! 8  batchLength int32        17 crc uint32 (CRC32C over 21..end)
//! 21 attributes int16         23 lastOffsetDelta int32        27 baseTimestamp int64
//! 35 maxTimestamp int64       43 producerId int64             51 producerEpoch int16
//! 53 baseSequence int32       57 recordCount int32            61 records...
//! ```

use bytes::{Bytes, BytesMut};

use crate::producer::ProducerBatch;
use crate::ErrorCode;

/// Bytes of the v2 batch header, up to the first record.
pub const HEADER_LEN: usize = 61;
/// `baseOffset` + `batchLength`: the part of the header not counted in `batchLength`.
pub const LOG_OVERHEAD: usize = 12;

const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

/// Why a record batch was rejected. Each maps to the Kafka error code the
/// client receives for its partition.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record set of {0} bytes is shorter than a v2 batch header ({HEADER_LEN} bytes)")]
    TooShort(usize),
    #[error("batch length field says {declared} bytes follow, but {available} do")]
    LengthMismatch { declared: i64, available: usize },
    #[error("record batch magic {0} is not supported: Keel stores only v2 batches")]
    UnsupportedMagic(i8),
    #[error("CRC32C mismatch: header says {expected:#010x}, the bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("batch of {size} bytes exceeds max.message.bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    RecordCount { count: i32, last_offset_delta: i32 },
    #[error("compression codec {0} is not one of none, gzip, snappy, lz4, zstd")]
    Compression(i16),
    #[error("invalid timestamps: first {first}, max {max}")]
    Timestamps { first: i64, max: i64 },
    #[error("inconsistent producer fields: id {id}, epoch {epoch}, base sequence {sequence}")]
    Producer { id: i64, epoch: i16, sequence: i32 },
    #[error("clients may not produce control batches")]
    ControlBatch,
    #[error("transactional batches are not supported")]
    Transactional,
}

impl BatchError {
    /// The Kafka error code a producer receives for this rejection.
    pub fn code(&self) -> ErrorCode {
        match self {
            BatchError::TooShort(_) | BatchError::LengthMismatch { .. } | BatchError::CrcMismatch { .. } => {
                ErrorCode::CorruptMessage
            }
            BatchError::UnsupportedMagic(_) => ErrorCode::UnsupportedForMessageFormat,
            BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            BatchError::Compression(_) => ErrorCode::UnsupportedCompressionType,
            BatchError::RecordCount { .. }
            | BatchError::Timestamps { .. }
            | BatchError::Producer { .. }
            | BatchError::ControlBatch
            | BatchError::Transactional => ErrorCode::InvalidRecord,
        }
    }
}

/// The compression codec named in a batch's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// A record batch whose header has been checked; the payload is never copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

impl RecordBatch {
    /// Validates one complete batch as a client sent it: structure, magic,
    /// CRC32C, size limit, record count, timestamps and producer fields.
    pub fn validate(bytes: Bytes, max_batch_bytes: usize) -> Result<Self, BatchError> {
        let batch = Self::read(bytes)?;
        if batch.len() > max_batch_bytes {
            return Err(BatchError::TooLarge { size: batch.len(), max: max_batch_bytes });
        }
        let actual = crc32c::crc32c(&batch.bytes[ATTRIBUTES..]);
        if actual != batch.crc() {
            return Err(BatchError::CrcMismatch { expected: batch.crc(), actual });
        }
        batch.check_fields()?;
        Ok(batch)
    }

    /// Views a batch read back from Keel's own log, whose storage checksum
    /// already covers the bytes: checks only the structure needed to read the
    /// header safely.
    pub fn read(bytes: Bytes) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::TooShort(bytes.len()));
        }
        let magic = bytes[MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let declared = i64::from(i32_at(&bytes, BATCH_LENGTH)) + LOG_OVERHEAD as i64;
        if declared != bytes.len() as i64 {
            return Err(BatchError::LengthMismatch { declared, available: bytes.len() });
        }
        Ok(RecordBatch { bytes })
    }

    fn check_fields(&self) -> Result<(), BatchError> {
        let attributes = self.attributes();
        if attributes & CONTROL_FLAG != 0 {
            return Err(BatchError::ControlBatch);
        }
        if attributes & TRANSACTIONAL_FLAG != 0 {
            return Err(BatchError::Transactional);
        }
        self.compression()?;
        let (count, last_offset_delta) = (self.record_count(), self.last_offset_delta());
        if count < 1 || i64::from(last_offset_delta) != i64::from(count) - 1 {
            return Err(BatchError::RecordCount { count, last_offset_delta });
        }
        let (first, max) = (self.first_timestamp(), self.max_timestamp());
        if first < -1 || max < first {
            return Err(BatchError::Timestamps { first, max });
        }
        let (id, epoch, sequence) = (self.producer_id(), self.producer_epoch(), self.base_sequence());
        // -1 means "no producer id": the batch is not idempotent and its
        // epoch and sequence mean nothing.
        if id < -1 || (id >= 0 && (epoch < 0 || sequence < 0)) {
            return Err(BatchError::Producer { id, epoch, sequence });
        }
        Ok(())
    }

    /// Returns this batch with its base offset and partition leader epoch set.
    /// Neither field is covered by the CRC, so the checksum stays valid. The
    /// bytes are patched in place when this is their only owner.
    pub fn stamp(self, base_offset: i64, leader_epoch: i32) -> RecordBatch {
        let mut buf = self.bytes.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        stamp_header(&mut buf, base_offset, leader_epoch);
        RecordBatch { bytes: buf.freeze() }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn base_offset(&self) -> i64 {
        i64_at(&self.bytes, 0)
    }

    pub fn partition_leader_epoch(&self) -> i32 {
        i32_at(&self.bytes, PARTITION_LEADER_EPOCH)
    }

    pub fn crc(&self) -> u32 {
        i32_at(&self.bytes, CRC) as u32
    }

    pub fn attributes(&self) -> i16 {
        i16_at(&self.bytes, ATTRIBUTES)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes() & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(BatchError::Compression(other)),
        }
    }

    pub fn last_offset_delta(&self) -> i32 {
        i32_at(&self.bytes, LAST_OFFSET_DELTA)
    }

    pub fn first_timestamp(&self) -> i64 {
        i64_at(&self.bytes, BASE_TIMESTAMP)
    }

    pub fn max_timestamp(&self) -> i64 {
        i64_at(&self.bytes, MAX_TIMESTAMP)
    }

    pub fn producer_id(&self) -> i64 {
        i64_at(&self.bytes, PRODUCER_ID)
    }

    pub fn producer_epoch(&self) -> i16 {
        i16_at(&self.bytes, PRODUCER_EPOCH)
    }

    pub fn base_sequence(&self) -> i32 {
        i32_at(&self.bytes, BASE_SEQUENCE)
    }

    pub fn record_count(&self) -> i32 {
        i32_at(&self.bytes, RECORD_COUNT)
    }

    /// The idempotent producer fields, if the batch carries a producer id.
    pub fn producer(&self) -> Option<ProducerBatch> {
        (self.producer_id() >= 0).then(|| ProducerBatch {
            producer_id: self.producer_id(),
            epoch: self.producer_epoch(),
            first_seq: self.base_sequence(),
            record_count: self.record_count(),
        })
    }
}

/// Splits a produce request's record set into its batches, validating each.
/// Validation stops at the first bad batch: a partition's records are
/// accepted or rejected whole.
pub fn validate_record_set(mut bytes: Bytes, max_batch_bytes: usize) -> Result<Vec<RecordBatch>, BatchError> {
    let mut batches = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < LOG_OVERHEAD {
            return Err(BatchError::TooShort(bytes.len()));
        }
        let declared = i64::from(i32_at(&bytes, BATCH_LENGTH)) + LOG_OVERHEAD as i64;
        if declared < HEADER_LEN as i64 || declared > bytes.len() as i64 {
            return Err(BatchError::LengthMismatch { declared, available: bytes.len() });
        }
        let batch = bytes.split_to(declared as usize);
        batches.push(RecordBatch::validate(batch, max_batch_bytes)?);
    }
    if batches.is_empty() {
        return Err(BatchError::TooShort(0));
    }
    Ok(batches)
}

/// Writes base offset and partition leader epoch into a batch header.
fn stamp_header(buf: &mut [u8], base_offset: i64, leader_epoch: i32) {
    buf[..8].copy_from_slice(&base_offset.to_be_bytes());
    buf[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

// Callers have checked that the header is in bounds, so these cannot fail.
fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(v)
}

/// Builders of well-formed batches, for tests here and in other crates.
pub mod testing {
    use super::*;

    /// Fields of a synthetic batch; records are opaque filler bytes.
    #[derive(Clone, Debug)]
    pub struct BatchSpec {
        pub record_count: i32,
        pub first_timestamp: i64,
        pub max_timestamp: i64,
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_sequence: i32,
        pub attributes: i16,
        pub payload: Vec<u8>,
    }

    impl Default for BatchSpec {
        fn default() -> Self {
            BatchSpec {
                record_count: 1,
                first_timestamp: 1_000,
                max_timestamp: 1_000,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                attributes: 0,
                payload: vec![0xAB; 16],
            }
        }
    }

    /// Encodes a v2 batch header with a correct length and CRC over the payload.
    pub fn encode(spec: &BatchSpec) -> Bytes {
        let mut b = Vec::with_capacity(HEADER_LEN + spec.payload.len());
        b.extend_from_slice(&0i64.to_be_bytes());
        let batch_length = (HEADER_LEN + spec.payload.len() - LOG_OVERHEAD) as i32;
        b.extend_from_slice(&batch_length.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&spec.attributes.to_be_bytes());
        b.extend_from_slice(&(spec.record_count - 1).to_be_bytes());
        b.extend_from_slice(&spec.first_timestamp.to_be_bytes());
        b.extend_from_slice(&spec.max_timestamp.to_be_bytes());
        b.extend_from_slice(&spec.producer_id.to_be_bytes());
        b.extend_from_slice(&spec.producer_epoch.to_be_bytes());
        b.extend_from_slice(&spec.base_sequence.to_be_bytes());
        b.extend_from_slice(&spec.record_count.to_be_bytes());
        b.extend_from_slice(&spec.payload);
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{encode, BatchSpec};
    use super::*;

    const MAX: usize = 1 << 20;

    fn corrupt(bytes: &Bytes, at: usize, value: u8) -> Bytes {
        let mut v = bytes.to_vec();
        v[at] = value;
        Bytes::from(v)
    }

    #[test]
    fn valid_batch_exposes_its_header() {
        let spec =
            BatchSpec { record_count: 3, producer_id: 7, producer_epoch: 1, base_sequence: 10, ..Default::default() };
        let batch = RecordBatch::validate(encode(&spec), MAX).expect("valid");
        assert_eq!(batch.record_count(), 3);
        assert_eq!(batch.last_offset_delta(), 2);
        assert_eq!(batch.compression(), Ok(Compression::None));
        assert_eq!(batch.producer(), Some(ProducerBatch { producer_id: 7, epoch: 1, first_seq: 10, record_count: 3 }));
    }

    #[test]
    fn stamping_keeps_the_crc_valid_and_the_payload_intact() {
        let bytes = encode(&BatchSpec::default());
        let stamped = RecordBatch::validate(bytes.clone(), MAX).expect("valid").stamp(42, 7);
        assert_eq!(stamped.base_offset(), 42);
        assert_eq!(stamped.partition_leader_epoch(), 7);
        assert_eq!(stamped.as_bytes()[ATTRIBUTES..], bytes[ATTRIBUTES..]);
        RecordBatch::validate(stamped.into_bytes(), MAX).expect("still valid");
    }

    #[test]
    fn every_bad_header_is_a_typed_error_with_a_kafka_code() {
        let good = encode(&BatchSpec::default());
        let cases: Vec<(Bytes, ErrorCode)> = vec![
            (good.slice(..HEADER_LEN - 1), ErrorCode::CorruptMessage),
            (good.slice(..good.len() - 1), ErrorCode::CorruptMessage),
            (corrupt(&good, MAGIC, 1), ErrorCode::UnsupportedForMessageFormat),
            (corrupt(&good, MAGIC, 0), ErrorCode::UnsupportedForMessageFormat),
            (corrupt(&good, HEADER_LEN + 3, 0), ErrorCode::CorruptMessage),
            (encode(&BatchSpec { record_count: 0, ..Default::default() }), ErrorCode::InvalidRecord),
            (encode(&BatchSpec { attributes: 5, ..Default::default() }), ErrorCode::UnsupportedCompressionType),
            (encode(&BatchSpec { attributes: CONTROL_FLAG, ..Default::default() }), ErrorCode::InvalidRecord),
            (
                encode(&BatchSpec { first_timestamp: 9, max_timestamp: 3, ..Default::default() }),
                ErrorCode::InvalidRecord,
            ),
            (encode(&BatchSpec { producer_id: 3, producer_epoch: -1, ..Default::default() }), ErrorCode::InvalidRecord),
        ];
        for (bytes, code) in cases {
            let err = RecordBatch::validate(bytes, MAX).expect_err("must be rejected");
            assert_eq!(err.code(), code, "{err}");
        }
        let big = encode(&BatchSpec { payload: vec![0; 100], ..Default::default() });
        assert_eq!(RecordBatch::validate(big, 64).map_err(|e| e.code()), Err(ErrorCode::MessageTooLarge));
    }

    #[test]
    fn record_sets_split_into_batches_and_reject_trailing_garbage() {
        let a = encode(&BatchSpec::default());
        let b = encode(&BatchSpec { record_count: 4, ..Default::default() });
        let set = Bytes::from([a.to_vec(), b.to_vec()].concat());
        let batches = validate_record_set(set.clone(), MAX).expect("two batches");
        assert_eq!(batches.iter().map(|b| b.record_count()).collect::<Vec<_>>(), vec![1, 4]);
        let with_garbage = Bytes::from([set.to_vec(), vec![1, 2, 3]].concat());
        assert!(validate_record_set(with_garbage, MAX).is_err());
        assert!(validate_record_set(Bytes::new(), MAX).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_ones_revalidate_after_stamping() {
        bolero::check!().with_type::<(Vec<u8>, i64, i32)>().for_each(|(raw, offset, epoch)| {
            // Feed both raw bytes and a valid batch with the raw bytes spliced in.
            let mut spliced = encode(&BatchSpec::default()).to_vec();
            let len = spliced.len();
            for (i, byte) in raw.iter().enumerate().take(len) {
                spliced[(i * 7) % len] ^= byte;
            }
            for bytes in [Bytes::from(raw.clone()), Bytes::from(spliced)] {
                if let Ok(batches) = validate_record_set(bytes, MAX) {
                    for batch in batches {
                        let stamped = batch.stamp(*offset, *epoch);
                        assert_eq!(stamped.base_offset(), *offset);
                        RecordBatch::validate(stamped.into_bytes(), MAX).expect("stamped batch revalidates");
                    }
                }
            }
        });
    }
}
