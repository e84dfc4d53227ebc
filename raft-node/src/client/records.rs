//! Record batches on the client side: encode v2 batches for produce, decode
//! fetched ones. Only uncompressed batches are decoded (kafka-protocol is built
//! without compression codecs); a compressed batch from another client is
//! reported as undecodable, with the offsets it spans, never skipped silently.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use log_core::batch::{self as wire, RecordBatch, HEADER_LEN, LOG_OVERHEAD};

use super::Error;

/// The attribute bit of control batches (transaction markers): not user data.
const CONTROL_FLAG: i16 = 0x20;

/// The smallest encoded record: seven one-byte varints and the attributes
/// byte (length, attributes, timestamp delta, offset delta, key length,
/// value length, header count). Bounds the record count a batch can hold.
const MIN_RECORD_BYTES: usize = 7;

/// A record to produce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

/// A record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// One fetched batch: its records, or why they cannot be read. Either way
/// `next_offset` is where reading continues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedBatch {
    pub base_offset: i64,
    pub next_offset: i64,
    pub records: Result<Vec<ConsumedRecord>, String>,
}

/// A fetched record set, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedRecordSet {
    pub batches: Vec<ConsumedBatch>,
    /// Set when the bytes stopped making sense before their end; the batches
    /// before it are good.
    pub broken: Option<String>,
}

/// The idempotent producer fields of a batch: who sends it, and the
/// sequence number of its first record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSequence {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
}

impl ProducerSequence {
    /// The same producer's batch `records` records later. Sequences wrap to 0
    /// after i32::MAX, as Kafka's do.
    pub fn after(self, records: i32) -> ProducerSequence {
        let next = (i64::from(self.first_seq) + i64::from(records)) % (i64::from(i32::MAX) + 1);
        ProducerSequence { first_seq: next as i32, ..self }
    }
}

/// Encodes `records` as one uncompressed v2 batch, offsets from 0 (the
/// broker assigns the real ones), with `producer`'s fields if given.
pub fn encode_batch(records: &[ProducerRecord], producer: Option<ProducerSequence>) -> Result<Bytes, Error> {
    // The encoder groups records whose offset - sequence agree, and takes the
    // first one's as the batch's base sequence: -1 means no producer.
    let (producer_id, producer_epoch, first_seq) = match producer {
        Some(p) => (p.producer_id, p.epoch, p.first_seq),
        None => (-1, -1, -1),
    };
    if producer.is_some() && i64::from(first_seq) + records.len() as i64 > i64::from(i32::MAX) + 1 {
        return Err(Error::Encode(format!(
            "{} records from sequence {first_seq} would cross the sequence wrap",
            records.len()
        )));
    }
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: first_seq.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(|e| Error::Encode(format!("{e:#}")))?;
    Ok(buf.freeze())
}

/// Decodes the batches of a fetch answer, keeping records at or after
/// `from_offset` (the first batch may start before it). A trailing partial
/// batch, which a fetch cut at its byte limit, is dropped: the next fetch
/// returns it whole.
pub fn decode_record_set(mut bytes: Bytes, from_offset: i64) -> DecodedRecordSet {
    let mut set = DecodedRecordSet::default();
    while bytes.len() >= LOG_OVERHEAD {
        let length = i32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        let declared = i64::from(length) + LOG_OVERHEAD as i64;
        if declared < HEADER_LEN as i64 {
            set.broken = Some(format!("a batch declares {declared} bytes, less than a batch header"));
            return set;
        }
        if declared > bytes.len() as i64 {
            return set;
        }
        let batch = match RecordBatch::read(bytes.split_to(declared as usize)) {
            Ok(batch) => batch,
            Err(e) => {
                set.broken = Some(e.to_string());
                return set;
            }
        };
        set.batches.push(decode_batch(&batch, from_offset));
    }
    set
}

fn decode_batch(batch: &RecordBatch, from_offset: i64) -> ConsumedBatch {
    let base_offset = batch.base_offset();
    let next_offset = base_offset.saturating_add(i64::from(batch.last_offset_delta())).saturating_add(1);
    let records = match batch.compression() {
        Ok(wire::Compression::None) => decode_records(batch, from_offset),
        Ok(codec) => Err(format!(
            "{}-compressed batch: this client reads only uncompressed batches",
            format!("{codec:?}").to_lowercase()
        )),
        Err(e) => Err(e.to_string()),
    };
    ConsumedBatch { base_offset, next_offset, records }
}

fn decode_records(batch: &RecordBatch, from_offset: i64) -> Result<Vec<ConsumedRecord>, String> {
    if batch.attributes() & CONTROL_FLAG != 0 {
        return Ok(Vec::new());
    }
    // The decoder reserves room for the declared count before reading: a
    // forged count must not become a huge allocation.
    let count = batch.record_count();
    if count < 0 || count as usize > (batch.len() - HEADER_LEN) / MIN_RECORD_BYTES {
        return Err(format!("record count {count} does not fit in a batch of {} bytes", batch.len()));
    }
    let mut bytes = batch.as_bytes().clone();
    let set = RecordBatchDecoder::decode(&mut bytes).map_err(|e| format!("{e:#}"))?;
    Ok(set
        .records
        .into_iter()
        .filter(|r| r.offset >= from_offset)
        .map(|r| ConsumedRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use log_core::batch::validate_record_set;

    use super::*;

    fn record(key: Option<&str>, value: &str, timestamp: i64) -> ProducerRecord {
        ProducerRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            timestamp,
        }
    }

    /// A batch as the broker stores it: validated, then stamped with its offset.
    fn stored(records: &[ProducerRecord], base_offset: i64) -> Bytes {
        let batches = validate_record_set(encode_batch(records, None).unwrap(), usize::MAX).unwrap();
        let mut out = BytesMut::new();
        for batch in batches {
            out.extend_from_slice(batch.stamp(base_offset, 1).as_bytes());
        }
        out.freeze()
    }

    fn values(set: &DecodedRecordSet) -> Vec<(i64, Option<String>, String)> {
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
        set.batches
            .iter()
            .flat_map(|b| b.records.clone().unwrap())
            .map(|r| (r.offset, text(&r.key), text(&r.value).unwrap_or_default()))
            .collect()
    }

    #[test]
    fn encoded_batches_pass_broker_validation_and_decode_back() {
        let records = [record(Some("k1"), "v1", 1000), record(None, "v2", 1001), record(Some(""), "", 999)];
        assert_eq!(validate_record_set(encode_batch(&records, None).unwrap(), usize::MAX).unwrap().len(), 1);
        let mut bytes = BytesMut::from(&stored(&records, 10)[..]);
        bytes.extend_from_slice(&stored(&[record(Some("k4"), "v4", 5)], 13));
        let set = decode_record_set(bytes.freeze(), 0);
        assert_eq!(set.broken, None);
        assert_eq!(
            values(&set),
            [
                (10, Some("k1".into()), "v1".into()),
                (11, None, "v2".into()),
                (12, Some("".into()), "".into()),
                (13, Some("k4".into()), "v4".into()),
            ]
        );
        assert_eq!(set.batches.iter().map(|b| b.next_offset).collect::<Vec<_>>(), [13, 14]);
        assert_eq!(set.batches[0].records.as_ref().unwrap()[0].timestamp, 1000);
    }

    #[test]
    fn a_producer_batch_carries_its_id_epoch_and_first_sequence() {
        let records = [record(None, "a", 0), record(None, "b", 0), record(None, "c", 0)];
        let producer = ProducerSequence { producer_id: 7000, epoch: 2, first_seq: 41 };
        let batches = validate_record_set(encode_batch(&records, Some(producer)).unwrap(), usize::MAX).unwrap();
        let fields = batches[0].producer().expect("producer fields");
        assert_eq!((fields.producer_id, fields.epoch, fields.first_seq, fields.record_count), (7000, 2, 41, 3));
        assert!(validate_record_set(encode_batch(&records, None).unwrap(), usize::MAX).unwrap()[0]
            .producer()
            .is_none());
        let at_wrap = ProducerSequence { first_seq: i32::MAX - 1, ..producer };
        assert!(encode_batch(&records, Some(at_wrap)).is_err(), "a batch must not cross the sequence wrap");
    }

    #[test]
    fn records_before_the_fetch_offset_are_dropped_but_the_batch_still_advances() {
        let bytes = stored(&[record(None, "a", 0), record(None, "b", 0), record(None, "c", 0)], 0);
        let set = decode_record_set(bytes.clone(), 2);
        assert_eq!(values(&set), [(2, None, "c".into())]);
        let past = decode_record_set(bytes, 3);
        assert_eq!(past.batches.len(), 1);
        assert_eq!(past.batches[0].next_offset, 3);
        assert!(values(&past).is_empty());
    }

    #[test]
    fn a_partial_trailing_batch_is_left_for_the_next_fetch() {
        let first = stored(&[record(None, "a", 0)], 0);
        let second = stored(&[record(None, "b", 0)], 1);
        for cut in 0..second.len() {
            let mut bytes = BytesMut::from(&first[..]);
            bytes.extend_from_slice(&second[..cut]);
            let set = decode_record_set(bytes.freeze(), 0);
            assert_eq!(set.broken, None, "cut {cut}");
            assert_eq!(values(&set), [(0, None, "a".into())], "cut {cut}");
        }
    }

    #[test]
    fn a_compressed_batch_is_reported_with_its_offsets() {
        let mut bytes = BytesMut::from(&stored(&[record(None, "a", 0), record(None, "b", 0)], 5)[..]);
        // Mark it gzip (attributes at 21..23) and fix the CRC (over 21..).
        bytes[22] |= 1;
        let crc = crc32c::crc32c(&bytes[21..]);
        bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        let set = decode_record_set(bytes.freeze(), 0);
        assert_eq!(set.batches.len(), 1);
        let batch = &set.batches[0];
        assert_eq!((batch.base_offset, batch.next_offset), (5, 7));
        let reason = batch.records.clone().unwrap_err();
        assert!(reason.contains("gzip-compressed"), "{reason}");
    }

    #[test]
    fn a_forged_record_count_is_an_error_not_an_allocation() {
        let mut bytes = BytesMut::from(&stored(&[record(None, "a", 0)], 0)[..]);
        bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let set = decode_record_set(bytes.freeze(), 0);
        assert!(set.batches[0].records.as_ref().unwrap_err().contains("record count"));
    }

    #[test]
    fn a_corrupted_batch_fails_alone() {
        let mut bytes = BytesMut::from(&stored(&[record(None, "a", 0)], 0)[..]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        bytes.extend_from_slice(&stored(&[record(None, "b", 0)], 1));
        let set = decode_record_set(bytes.freeze(), 0);
        assert!(set.batches[0].records.is_err());
        assert_eq!(set.batches[1].records.as_ref().map(Vec::len), Ok(1));
    }

    #[test]
    fn garbage_framing_is_reported_as_broken() {
        let mut bytes = BytesMut::from(&stored(&[record(None, "a", 0)], 0)[..]);
        bytes.extend_from_slice(&[0u8; 8]);
        bytes.extend_from_slice(&3i32.to_be_bytes());
        let set = decode_record_set(bytes.freeze(), 0);
        assert_eq!(set.batches.len(), 1);
        assert!(set.broken.is_some());
    }
}
