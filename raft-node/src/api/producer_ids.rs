//! InitProducerId for idempotent producers (transactions do not exist).
//!
//! Each broker hands out ids from a block the metadata group allocated to it
//! (`Command::AllocateProducerIds`), so ids are unique across the cluster
//! without a round of consensus per producer. A broker starts with no block:
//! the rest of the block it had before a restart may already have been given
//! out, so it asks for a new one.
//!
//! A non-transactional producer keeps no state outside the partitions it
//! writes, so a re-initialisation that names its id and epoch (KIP-360, v3+)
//! is answered with the same id and the next epoch: the partitions then fence
//! the old epoch. An epoch about to run out gets a fresh id instead, as Kafka
//! does.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use log_core::metadata::{BrokerId, Command, ProducerIdBlock};
use log_core::ErrorCode;

use super::KafkaApi;

/// How long a request waits for the metadata group to allocate a block.
const ALLOCATION_TIMEOUT: Duration = Duration::from_secs(5);

/// The ids of this broker's block not yet handed out, and the tokens that
/// name its allocation requests.
pub(super) struct ProducerIdCursor {
    next: i64,
    end: i64,
    /// Seeded by std from the OS (from the simulation's seed under madsim),
    /// differently in every process: a restarted broker's tokens are new.
    token_keys: RandomState,
    requests: u64,
}

impl Default for ProducerIdCursor {
    fn default() -> Self {
        ProducerIdCursor { next: 0, end: 0, token_keys: RandomState::new(), requests: 0 }
    }
}

impl ProducerIdCursor {
    fn take(&mut self) -> Option<i64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    fn next_token(&mut self) -> u64 {
        self.requests += 1;
        self.token_keys.hash_one(self.requests)
    }

    fn refill(&mut self, block: ProducerIdBlock) {
        self.next = block.first;
        self.end = block.end();
    }
}

/// What a request is answered with, short of allocating.
#[derive(Debug, PartialEq, Eq)]
enum Init {
    /// A new id, at epoch 0.
    Fresh,
    /// The producer's own id at its next epoch.
    Bump { id: i64, epoch: i16 },
}

fn initialisation(request: &InitProducerIdRequest, allocated: impl Fn(i64) -> bool) -> Result<Init, ErrorCode> {
    if request.transactional_id.is_some() {
        return Err(ErrorCode::InvalidRequest);
    }
    match (request.producer_id.0, request.producer_epoch) {
        (-1, -1) => Ok(Init::Fresh),
        // Kafka's rule: an id and an epoch, or neither.
        (-1, _) | (_, -1) => Err(ErrorCode::InvalidRequest),
        (id, epoch) if epoch < 0 || !allocated(id) => Err(ErrorCode::InvalidRequest),
        (_, epoch) if epoch >= i16::MAX - 1 => Ok(Init::Fresh),
        (id, epoch) => Ok(Init::Bump { id, epoch: epoch + 1 }),
    }
}

impl KafkaApi {
    pub async fn init_producer_id(&self, request: &InitProducerIdRequest) -> InitProducerIdResponse {
        let (code, id, epoch) = match self.producer_id_and_epoch(request).await {
            Ok((id, epoch)) => (ErrorCode::None, id, epoch),
            Err(code) => (code, -1, -1),
        };
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    }

    async fn producer_id_and_epoch(&self, request: &InitProducerIdRequest) -> Result<(i64, i16), ErrorCode> {
        match initialisation(request, |id| self.view().metadata.is_allocated_producer_id(id))? {
            Init::Fresh => Ok((self.new_producer_id().await?, 0)),
            Init::Bump { id, epoch } => Ok((id, epoch)),
        }
    }

    /// An id never handed out before, taking a new block when this one is used up.
    async fn new_producer_id(&self) -> Result<i64, ErrorCode> {
        let mut cursor = self.producer_ids.lock().await;
        if let Some(id) = cursor.take() {
            return Ok(id);
        }
        let broker = BrokerId::try_from(self.node.node_id).map_err(|_| ErrorCode::UnknownServerError)?;
        let token = cursor.next_token();
        let deadline = tokio::time::Instant::now() + ALLOCATION_TIMEOUT;
        let allocated = OnceLock::new();
        let command = Command::AllocateProducerIds { broker, token };
        super::topics::precheck(&self.view().metadata, &command).map_err(|(code, _)| code)?;
        self.propose_and_wait(command, deadline, |m| {
            let block = m.producer_id_block(broker).filter(|b| b.token == token)?;
            let _ = allocated.set(block);
            Some(Ok(()))
        })
        .await
        .map_err(|(code, _)| code)?;
        cursor.refill(*allocated.get().ok_or(ErrorCode::UnknownServerError)?);
        cursor.take().ok_or(ErrorCode::UnknownServerError)
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn request(id: i64, epoch: i16) -> InitProducerIdRequest {
        // The default transactional id is "", not null.
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    }

    /// Ids 0..1000 were allocated.
    fn decide(request: &InitProducerIdRequest) -> Result<Init, ErrorCode> {
        initialisation(request, |id| (0..1000).contains(&id))
    }

    #[test]
    fn a_new_producer_gets_a_fresh_id_and_a_known_one_its_next_epoch() {
        assert_eq!(decide(&request(-1, -1)), Ok(Init::Fresh));
        assert_eq!(decide(&request(7, 0)), Ok(Init::Bump { id: 7, epoch: 1 }));
        assert_eq!(decide(&request(7, i16::MAX - 2)), Ok(Init::Bump { id: 7, epoch: i16::MAX - 1 }));
        // An exhausted epoch starts over with a new id, as in Kafka.
        assert_eq!(decide(&request(7, i16::MAX - 1)), Ok(Init::Fresh));
    }

    #[test]
    fn a_cursor_hands_out_each_id_of_its_block_once() {
        let mut cursor = ProducerIdCursor::default();
        assert_eq!(cursor.take(), None, "a new cursor has no block");
        cursor.refill(ProducerIdBlock { first: 3000, token: 1 });
        let ids: Vec<i64> = std::iter::from_fn(|| cursor.take()).collect();
        assert_eq!(ids, (3000..4000).collect::<Vec<_>>());
    }

    /// A restarted broker must not name a request as it did before.
    #[test]
    fn tokens_differ_between_requests_and_between_cursors() {
        let (mut a, mut b) = (ProducerIdCursor::default(), ProducerIdCursor::default());
        let tokens = [a.next_token(), a.next_token(), b.next_token()];
        assert!(tokens[0] != tokens[1] && tokens[0] != tokens[2] && tokens[1] != tokens[2], "{tokens:?}");
    }

    #[test]
    fn inconsistent_unallocated_or_transactional_requests_are_invalid() {
        let transactional =
            request(-1, -1).with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t"))));
        let empty = request(-1, -1).with_transactional_id(Some(TransactionalId(StrBytes::default())));
        for bad in
            [request(-1, 0), request(7, -1), request(1000, 0), request(-5, 0), request(7, -3), transactional, empty]
        {
            assert_eq!(decide(&bad), Err(ErrorCode::InvalidRequest), "{bad:?}");
        }
    }
}
