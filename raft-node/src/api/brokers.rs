//! UnregisterBroker (KIP-500's, api key 64): takes a broker out of the
//! cluster for good, through the metadata group from any broker. Refused
//! while a partition replica (or a move's target) still names it; `keel
//! cluster decommission` moves them off first. Once the metadata shows it
//! gone, the metadata group's leader removes it from the group and every
//! broker drops it as a transport peer.

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use log_core::metadata::Command;

use super::topics::deadline;
use super::{str_bytes, KafkaApi};

/// The request carries no timeout: as long as a metadata change may take.
const UNREGISTER_TIMEOUT_MS: i32 = 30_000;

impl KafkaApi {
    pub async fn unregister_broker(&self, request: &UnregisterBrokerRequest) -> UnregisterBrokerResponse {
        let id = request.broker_id.0;
        let command = Command::UnregisterBroker { id };
        // The machine is pure: its verdict on a copy is the group's.
        let result = match self.view().metadata.as_ref().clone().apply(command.clone()) {
            Err(e) => Err((e.code(), e.to_string())),
            Ok(_) => {
                let effect = |m: &log_core::metadata::ClusterMetadata| m.is_removed(id).then_some(Ok(()));
                self.propose_and_wait(command, deadline(UNREGISTER_TIMEOUT_MS), effect).await
            }
        };
        match result {
            Ok(()) => UnregisterBrokerResponse::default(),
            Err((code, message)) => UnregisterBrokerResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(&message))),
        }
    }
}
