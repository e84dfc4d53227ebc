//! What brokers say to each other over the transport: raft messages of any
//! group, hints of who leads which group (so every broker can answer
//! Metadata for partitions it does not host), and a joining broker's request
//! to be let into the cluster.

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::group_id::GroupId;

#[derive(Clone, Debug, PartialEq)]
pub enum PeerMessage {
    Raft {
        group: GroupId,
        message: Message,
    },
    LeaderHint {
        group: GroupId,
        term: u64,
        leader: u64,
    },
    /// A broker not among the founders asks one of them to register it
    /// (`raft` is where peers reach it, `host:port` its Kafka address).
    Join {
        id: u64,
        raft: String,
        host: String,
        port: u16,
    },
}

const RAFT_TAG: u8 = 1;
const HINT_TAG: u8 = 2;
const JOIN_TAG: u8 = 3;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PeerMessageError {
    #[error("empty or unknown peer message")]
    Unknown,
    #[error("bad group id")]
    Group,
    #[error("bad raft message: {0}")]
    Raft(String),
    #[error("truncated leader hint")]
    Hint,
    #[error("malformed join request")]
    Join,
}

/// Appends a string with its u16 length. Addresses come from the broker's
/// own config, far below 64 KiB; a longer one is cut, and then refused as an
/// address by the receiver.
fn put_str(out: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Splits `n` bytes off the front of `bytes`.
fn take(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}

fn take_str(bytes: &[u8]) -> Option<(String, &[u8])> {
    let (len, rest) = take(bytes, 2)?;
    let (text, rest) = take(rest, u16::from_be_bytes(len.try_into().ok()?) as usize)?;
    Some((String::from_utf8(text.to_vec()).ok()?, rest))
}

fn decode_join(bytes: &[u8]) -> Option<PeerMessage> {
    let (id, rest) = take(bytes, 8)?;
    let (port, rest) = take(rest, 2)?;
    let (raft, rest) = take_str(rest)?;
    let (host, rest) = take_str(rest)?;
    rest.is_empty().then_some(())?;
    let id = u64::from_be_bytes(id.try_into().ok()?);
    Some(PeerMessage::Join { id, raft, host, port: u16::from_be_bytes(port.try_into().ok()?) })
}

impl PeerMessage {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(64);
        match self {
            PeerMessage::Raft { group, message } => {
                out.push(RAFT_TAG);
                group.encode(&mut out);
                // Writing a protobuf message into a Vec cannot fail.
                message.write_to_vec(&mut out).expect("protobuf encodes into memory");
            }
            PeerMessage::LeaderHint { group, term, leader } => {
                out.push(HINT_TAG);
                group.encode(&mut out);
                out.extend_from_slice(&term.to_be_bytes());
                out.extend_from_slice(&leader.to_be_bytes());
            }
            PeerMessage::Join { id, raft, host, port } => {
                out.push(JOIN_TAG);
                GroupId::Metadata.encode(&mut out);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&port.to_be_bytes());
                put_str(&mut out, raft);
                put_str(&mut out, host);
            }
        }
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<PeerMessage, PeerMessageError> {
        let (&tag, rest) = bytes.split_first().ok_or(PeerMessageError::Unknown)?;
        let (group, rest) = GroupId::decode(rest).ok_or(PeerMessageError::Group)?;
        match tag {
            RAFT_TAG => {
                let message = Message::parse_from_bytes(rest).map_err(|e| PeerMessageError::Raft(e.to_string()))?;
                Ok(PeerMessage::Raft { group, message })
            }
            HINT_TAG if rest.len() == 16 => {
                let term = u64::from_be_bytes(rest[..8].try_into().map_err(|_| PeerMessageError::Hint)?);
                let leader = u64::from_be_bytes(rest[8..].try_into().map_err(|_| PeerMessageError::Hint)?);
                Ok(PeerMessage::LeaderHint { group, term, leader })
            }
            HINT_TAG => Err(PeerMessageError::Hint),
            JOIN_TAG if group == GroupId::Metadata => decode_join(rest).ok_or(PeerMessageError::Join),
            JOIN_TAG => Err(PeerMessageError::Join),
            _ => Err(PeerMessageError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_messages_round_trip_and_garbage_is_an_error() {
        let mut message = Message::default();
        message.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        message.from = 1;
        message.to = 2;
        message.term = 7;
        let group = GroupId::Partition { topic: [3; 16], partition: 1 };
        let join = PeerMessage::Join { id: 4, raft: "10.0.0.4:19092".into(), host: "b4".into(), port: 9092 };
        for m in
            [PeerMessage::Raft { group, message }, PeerMessage::LeaderHint { group, term: 4, leader: 2 }, join.clone()]
        {
            assert_eq!(PeerMessage::decode(&m.encode()), Ok(m));
        }
        assert_eq!(PeerMessage::decode(&[]), Err(PeerMessageError::Unknown));
        assert_eq!(PeerMessage::decode(&[HINT_TAG, 0, 1]), Err(PeerMessageError::Hint));
        assert!(PeerMessage::decode(&[RAFT_TAG, 0, 0xff, 0xff]).is_err());
        let bytes = join.encode();
        for cut in 0..bytes.len() {
            assert!(PeerMessage::decode(&bytes[..cut]).is_err(), "a join cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(PeerMessage::decode(&longer), Err(PeerMessageError::Join));
    }
}
