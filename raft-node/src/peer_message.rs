//! What brokers say to each other over the transport: raft messages of any
//! group, and hints of who leads which group (so every broker can answer
//! Metadata for partitions it does not host).

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::group_id::GroupId;

#[derive(Clone, Debug, PartialEq)]
pub enum PeerMessage {
    Raft { group: GroupId, message: Message },
    LeaderHint { group: GroupId, term: u64, leader: u64 },
}

const RAFT_TAG: u8 = 1;
const HINT_TAG: u8 = 2;

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
        for m in [PeerMessage::Raft { group, message }, PeerMessage::LeaderHint { group, term: 4, leader: 2 }] {
            assert_eq!(PeerMessage::decode(&m.encode()), Ok(m));
        }
        assert_eq!(PeerMessage::decode(&[]), Err(PeerMessageError::Unknown));
        assert_eq!(PeerMessage::decode(&[HINT_TAG, 0, 1]), Err(PeerMessageError::Hint));
        assert!(PeerMessage::decode(&[RAFT_TAG, 0, 0xff, 0xff]).is_err());
    }
}
