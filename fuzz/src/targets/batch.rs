//! Record batches through `validate_record_set` and `RecordBatch::validate`.

use arbitrary::Unstructured;
use bytes::Bytes;
use log_core::batch::testing::{encode, BatchSpec};
use log_core::batch::{validate_record_set, RecordBatch, HEADER_LEN};
use log_core::ErrorCode;

use super::mutate;

/// max.message.bytes for the target: small enough that the fuzzer meets it.
const MAX: usize = 2048;

/// The bytes `stamp` writes (base offset, partition leader epoch): outside the CRC.
const STAMPED: [std::ops::Range<usize>; 2] = [0..8, 12..16];

/// Property: over arbitrary bytes (mode byte % 4 == 0) and record sets of 1 to 3 valid
/// batches with structured mutations (the rest), validation never panics; an accepted set
/// splits its bytes exactly into batches that each validate alone, and still do after
/// `stamp(base_offset, epoch)`, which changes only the stamped fields; a rejected set's error
/// maps to the Kafka error code of its kind; and rewriting the stamped bytes of the input
/// never changes the verdict (they are outside every check).
pub fn record_batches(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else { return };
    let mut u = Unstructured::new(rest);
    let bytes = if mode % 4 == 0 { rest.to_vec() } else { batches(&mut u) };
    let (offset, epoch) = (u.arbitrary::<i64>().unwrap_or(0), u.arbitrary::<i32>().unwrap_or(0));
    let verdict = check(Bytes::from(bytes.clone()), offset, epoch);

    let mut restamped = bytes;
    if restamped.len() >= HEADER_LEN {
        for range in STAMPED {
            for i in range {
                restamped[i] = u.arbitrary().unwrap_or(0x5a);
            }
        }
        let again = check(Bytes::from(restamped), offset, epoch);
        assert_eq!(again.map(|_| ()), verdict.map(|_| ()), "the stamped fields changed the verdict");
    }
}

/// 1 to 3 valid batches from `u`'s specs, mutated.
fn batches(u: &mut Unstructured<'_>) -> Vec<u8> {
    let mut set = Vec::new();
    for _ in 0..u.int_in_range(1..=3u8).unwrap_or(1) {
        let count = u.int_in_range(1..=5i32).unwrap_or(1);
        let first_timestamp = u.int_in_range(-1..=3i64).unwrap_or(0);
        let producer_id = u.int_in_range(-1..=2i64).unwrap_or(-1);
        let spec = BatchSpec {
            record_count: count,
            first_timestamp,
            max_timestamp: first_timestamp + u.int_in_range(0..=2i64).unwrap_or(0),
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { u.int_in_range(0..=2i16).unwrap_or(0) },
            base_sequence: if producer_id < 0 { -1 } else { u.int_in_range(0..=9i32).unwrap_or(0) },
            attributes: u.int_in_range(0..=4i16).unwrap_or(0),
            payload: (0..u.int_in_range(0..=64usize).unwrap_or(0)).map(|_| u.arbitrary().unwrap_or(0)).collect(),
        };
        set.extend_from_slice(&encode(&spec));
    }
    mutate(u, &mut set);
    set
}

fn check(bytes: Bytes, offset: i64, epoch: i32) -> Result<Vec<RecordBatch>, ErrorCode> {
    match validate_record_set(bytes.clone(), MAX) {
        Ok(batches) => {
            assert!(!batches.is_empty());
            let mut at = 0;
            for batch in &batches {
                let original = bytes.slice(at..at + batch.len());
                assert_eq!(batch.as_bytes(), &original, "batches are the input's bytes, in order");
                at += batch.len();
                assert_eq!(RecordBatch::validate(original.clone(), MAX).as_ref(), Ok(batch));
                assert!(batch.record_count() >= 1 && batch.len() <= MAX);

                let stamped = batch.clone().stamp(offset, epoch);
                assert_eq!((stamped.base_offset(), stamped.partition_leader_epoch()), (offset, epoch));
                for (i, (a, b)) in stamped.as_bytes().iter().zip(original.iter()).enumerate() {
                    assert!(a == b || STAMPED.iter().any(|r| r.contains(&i)), "stamp changed byte {i}");
                }
                let again = RecordBatch::validate(stamped.into_bytes(), MAX).expect("a stamped batch revalidates");
                assert_eq!(again.record_count(), batch.record_count());
                assert_eq!(again.producer(), batch.producer());
            }
            assert_eq!(at, bytes.len(), "the batches cover the whole record set");
            Ok(batches)
        }
        Err(error) => {
            // A rejection carries one of the errors a produce may answer a
            // partition with, so a client can act on it; never NONE.
            let code = error.code();
            let batch_errors = [
                ErrorCode::CorruptMessage,
                ErrorCode::UnsupportedForMessageFormat,
                ErrorCode::MessageTooLarge,
                ErrorCode::UnsupportedCompressionType,
                ErrorCode::InvalidRecord,
            ];
            assert!(batch_errors.contains(&code), "{error} maps to {code:?}");
            Err(code)
        }
    }
}
