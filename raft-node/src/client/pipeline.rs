//! Pipelined produce: an idempotent producer's batches to one partition, several
//! acks=all Produce requests in flight on one connection to the leader, the
//! answers read in request order (as librdkafka does with enable.idempotence
//! and max.in.flight up to 5). The broker starts a connection's Produce
//! requests in order, so successive sequences arrive in order.

use std::collections::VecDeque;

use kafka_protocol::messages::ProduceRequest;

use super::records::{self, ProducerRecord, ProducerSequence};
use super::{produce_offset, stale_leader, Acks, Client, Error, NETWORK_SLACK, PRODUCE_VERSION};
use crate::kafka::client::ClientError;

/// Produce requests in flight on one connection to a partition's leader. Nothing
/// is retried here: every failure is the caller's to handle. After a failure of
/// the connection (an error, or no answer in time) it is dropped, and with it
/// every answer still due; the next pipeline looks the leader up again.
pub struct ProducePipeline<'a> {
    client: &'a mut Client,
    addr: String,
    topic: String,
    partition: i32,
    /// The correlation ids of the requests whose answers are due, oldest first.
    in_flight: VecDeque<i32>,
    broken: bool,
}

impl Client {
    /// A pipeline to the current leader of `topic`/`partition`, connected. An
    /// error here means nothing was sent.
    pub async fn produce_pipeline(&mut self, topic: &str, partition: i32) -> Result<ProducePipeline<'_>, Error> {
        let addr = self.leader_addr(topic, partition).await?;
        self.connection(&addr).await?;
        Ok(ProducePipeline {
            client: self,
            addr,
            topic: topic.to_string(),
            partition,
            in_flight: VecDeque::new(),
            broken: false,
        })
    }
}

impl ProducePipeline<'_> {
    /// How many answers are due.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Sends `records` as the acks=all batch `sequence`, without waiting for its answer.
    pub async fn write(&mut self, records: &[ProducerRecord], sequence: ProducerSequence) -> Result<(), Error> {
        let batch = records::encode_batch(records, Some(sequence))?;
        let request = self.client.produce_request(&self.topic, self.partition, batch, Acks::All);
        self.connection()?;
        match self.client.write_unanswered(&self.addr, &request).await {
            Ok(correlation_id) => {
                self.in_flight.push_back(correlation_id);
                Ok(())
            }
            Err(error) => {
                self.break_off();
                Err(error)
            }
        }
    }

    /// The answer to the oldest request in flight: the batch's base offset.
    pub async fn read(&mut self) -> Result<i64, Error> {
        let expected = self.in_flight.pop_front().ok_or_else(|| Error::Protocol("no produce in flight".into()))?;
        // The broker may hold an acks=all answer back up to the request's timeout.
        let timeout = self.client.config.request_timeout + NETWORK_SLACK;
        let connection = self.connection()?;
        let read = tokio::time::timeout(timeout, connection.read_response::<ProduceRequest>(PRODUCE_VERSION)).await;
        let error = match read {
            Ok(Ok((got, _))) if got != expected => {
                Error::Connection { addr: self.addr.clone(), source: ClientError::OutOfOrder { expected, got } }
            }
            Ok(Ok((_, response))) => {
                let (topic, partition) = (&self.topic, self.partition);
                let what = format!("produce to {topic}/{partition} at {}", self.addr);
                let offset = produce_offset(&response, topic, partition, &what);
                if let Err(Error::Kafka { code, .. }) = &offset {
                    if stale_leader(*code) {
                        // The next pipeline looks the leader up again.
                        self.client.cluster.topics.remove(topic);
                    }
                }
                return offset;
            }
            Ok(Err(source)) => Error::Connection { addr: self.addr.clone(), source },
            Err(_) => Error::Timeout { addr: self.addr.clone(), timeout },
        };
        self.break_off();
        Err(error)
    }

    fn connection(&mut self) -> Result<&mut crate::kafka::client::Connection, Error> {
        if self.broken {
            return Err(Error::Protocol(format!("the pipeline to {} broke off", self.addr)));
        }
        let addr = &self.addr;
        self.client.connections.get_mut(addr).ok_or_else(|| Error::Protocol(format!("lost the connection to {addr}")))
    }

    /// The connection is mid-exchange: drop it, and the answers it owed.
    fn break_off(&mut self) {
        self.broken = true;
        self.in_flight.clear();
        self.client.connections.remove(&self.addr);
        self.client.cluster.topics.remove(&self.topic);
    }
}
