//! The idempotent producer: a producer id from InitProducerId and a sequence
//! number per partition, so that a batch sent again after an unknown outcome
//! is recognised by the leader and written once.

use std::collections::BTreeMap;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::records::{self, ProducerRecord, ProducerSequence};
use super::{Acks, Client, Error};

const INIT_PRODUCER_ID_VERSION: i16 = 4;

/// Answers after which a batch's sequence can never be accepted: the
/// producer must start over with a new id.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const UNKNOWN_PRODUCER_ID: i16 = 59;
const PRODUCER_FENCED: i16 = 90;

/// A producer id and its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

impl Client {
    /// A new producer id, unique across the cluster, at epoch 0. Any broker
    /// allocates one; asking again only wastes an id, so every failure is retried.
    pub async fn init_producer_id(&mut self) -> Result<ProducerIdentity, Error> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let mut attempt = 0;
        loop {
            let error = match self.any_broker(INIT_PRODUCER_ID_VERSION, &request, true).await {
                Ok(InitProducerIdResponse { error_code: 0, producer_id, producer_epoch, .. }) => {
                    return Ok(ProducerIdentity { id: producer_id.0, epoch: producer_epoch })
                }
                Ok(response) => Error::kafka("init producer id".into(), response.error_code, None),
                Err(e) => e,
            };
            if attempt >= self.config.retries {
                return Err(error);
            }
            tokio::time::sleep(self.config.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Appends `records` with acks=all as the batch `sequence`. Every attempt
    /// whose fate is unknown is sent again: the leader answers a retry of a
    /// written batch with the first write's offset.
    pub async fn produce_idempotent(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
        sequence: ProducerSequence,
    ) -> Result<i64, Error> {
        let batch = records::encode_batch(records, Some(sequence))?;
        let offset = self.produce_batch(topic, partition, batch, Acks::All, true).await?;
        offset.ok_or_else(|| Error::Protocol(format!("acks=all produce to {topic}/{partition} without an offset")))
    }
}

/// Whether `error` means the producer's id, epoch or sequence can no longer
/// be accepted, so it must start over with a new id.
pub fn needs_new_producer_id(error: &Error) -> bool {
    let code = match error {
        Error::Kafka { code, .. } => *code,
        Error::AfterDelivery(inner) => return needs_new_producer_id(inner),
        _ => return false,
    };
    matches!(code, OUT_OF_ORDER_SEQUENCE_NUMBER | INVALID_PRODUCER_EPOCH | UNKNOWN_PRODUCER_ID | PRODUCER_FENCED)
}

/// The producer's id and the next sequence of each partition it writes to.
#[derive(Debug, Default)]
pub struct IdempotentProducer {
    identity: Option<ProducerIdentity>,
    next: BTreeMap<(String, i32), i32>,
}

impl IdempotentProducer {
    pub fn new() -> Self {
        IdempotentProducer::default()
    }

    /// The producer fields of the next batch to `topic`/`partition`, after
    /// getting a producer id if there is none. The sequence moves on only with
    /// [`acknowledged`](Self::acknowledged): until then the same batch may be sent again.
    pub async fn next_batch(
        &mut self,
        client: &mut Client,
        topic: &str,
        partition: i32,
    ) -> Result<ProducerSequence, Error> {
        let identity = match self.identity {
            Some(identity) => identity,
            None => *self.identity.insert(client.init_producer_id().await?),
        };
        let first_seq = self.next.get(&(topic.to_string(), partition)).copied().unwrap_or(0);
        Ok(ProducerSequence { producer_id: identity.id, epoch: identity.epoch, first_seq })
    }

    /// The batch `sequence` of `record_count` records was written.
    pub fn acknowledged(&mut self, topic: &str, partition: i32, sequence: ProducerSequence, record_count: i32) {
        if self.identity.map(|i| (i.id, i.epoch)) != Some((sequence.producer_id, sequence.epoch)) {
            return;
        }
        self.next.insert((topic.to_string(), partition), sequence.after(record_count).first_seq);
    }

    /// Starts over with a new producer id at the next batch: after a batch
    /// whose fate stays unknown, no later sequence of this id could follow it.
    pub fn reset(&mut self) {
        self.identity = None;
        self.next.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer_at(id: i64, epoch: i16) -> IdempotentProducer {
        IdempotentProducer { identity: Some(ProducerIdentity { id, epoch }), next: BTreeMap::new() }
    }

    fn next(p: &IdempotentProducer, topic: &str, partition: i32) -> i32 {
        p.next.get(&(topic.to_string(), partition)).copied().unwrap_or(0)
    }

    #[test]
    fn sequences_move_per_partition_on_acknowledgement_and_wrap() {
        let mut p = producer_at(9, 1);
        let batch = |first_seq| ProducerSequence { producer_id: 9, epoch: 1, first_seq };
        p.acknowledged("t", 0, batch(0), 3);
        p.acknowledged("t", 1, batch(0), 1);
        assert_eq!((next(&p, "t", 0), next(&p, "t", 1), next(&p, "u", 0)), (3, 1, 0));
        p.acknowledged("t", 0, batch(i32::MAX - 1), 2);
        assert_eq!(next(&p, "t", 0), 0, "sequences wrap to 0 after i32::MAX");
        // An answer for an identity given up on moves nothing.
        p.acknowledged("t", 1, ProducerSequence { producer_id: 8, epoch: 1, first_seq: 1 }, 5);
        assert_eq!(next(&p, "t", 1), 1);
        p.reset();
        assert!(p.identity.is_none() && p.next.is_empty());
    }

    #[test]
    fn only_sequence_and_epoch_errors_need_a_new_producer_id() {
        let kafka = |code| Error::kafka("produce".into(), code, None);
        assert!(needs_new_producer_id(&kafka(OUT_OF_ORDER_SEQUENCE_NUMBER)));
        assert!(needs_new_producer_id(&Error::AfterDelivery(Box::new(kafka(INVALID_PRODUCER_EPOCH)))));
        assert!(!needs_new_producer_id(&kafka(6)), "NOT_LEADER_OR_FOLLOWER is retried with the same sequence");
        assert!(!needs_new_producer_id(&Error::Protocol("x".into())));
    }
}
