//! What can go wrong talking to a cluster, with enough context to act on.

use std::time::Duration;

use kafka_protocol::error::ResponseError;

use crate::kafka::client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be opened: the request was surely not delivered.
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    /// The exchange failed after the request may have been sent.
    #[error("{addr}: {source}")]
    Connection { addr: String, source: ClientError },
    #[error("{addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// Every broker and bootstrap address was tried; one failure each.
    #[error("no broker reachable: {}", join(.0))]
    Unreachable(Vec<Error>),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    #[error("{context}: {}{}", error_name(*.code), .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka { context: String, code: i16, message: Option<String> },
    #[error("cannot encode the records: {0}")]
    Encode(String),
    /// The broker answered, but not in a way the protocol allows.
    #[error("unexpected answer: {0}")]
    Protocol(String),
    /// The last attempt failed, but an earlier one reached a broker that
    /// answered with a retriable error: that request may still take effect
    /// (a leader that stepped down after appending answers
    /// NOT_LEADER_OR_FOLLOWER, and its entry may commit under the next).
    #[error("{0} (an earlier attempt reached a broker and may have taken effect)")]
    AfterDelivery(Box<Error>),
}

impl Error {
    pub(super) fn kafka(context: String, code: i16, message: Option<String>) -> Error {
        Error::Kafka { context, code, message }
    }

    /// Whether every address tried refused the connection: nothing listens there.
    pub fn is_refused(&self) -> bool {
        match self {
            Error::Connect { source, .. } => source.kind() == std::io::ErrorKind::ConnectionRefused,
            Error::Unreachable(errors) => !errors.is_empty() && errors.iter().all(Error::is_refused),
            _ => false,
        }
    }
}

fn join(errors: &[Error]) -> String {
    if errors.is_empty() {
        return "no address to try".into();
    }
    errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
}

/// A Kafka error code as Kafka names it, e.g. `NOT_LEADER_OR_FOLLOWER (6)`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE (0)".into(),
        Some(ResponseError::Unknown(_)) => format!("error code {code}"),
        Some(error) => {
            let mut name = String::new();
            for (i, c) in error.to_string().chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            format!("{name} ({code})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION (3)");
        assert_eq!(error_name(0), "NONE (0)");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR (-1)");
        assert_eq!(error_name(31000), "error code 31000");
    }

    #[test]
    fn refused_only_when_every_address_refused() {
        let refused = || Error::Connect {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let timed_out = Error::Timeout { addr: "127.0.0.1:2".into(), timeout: Duration::from_secs(1) };
        assert!(refused().is_refused());
        assert!(Error::Unreachable(vec![refused(), refused()]).is_refused());
        assert!(!Error::Unreachable(vec![refused(), timed_out]).is_refused());
        assert!(!Error::Unreachable(vec![]).is_refused());
    }
}
