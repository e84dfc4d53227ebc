//! Which raft group a message, a file or a replica belongs to.

use std::fmt;

/// A raft group: the cluster metadata group (the controller), or one
/// partition of one topic. Topics are named by their uuid, so a topic deleted
/// and created again under the same name is a different group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupId {
    Metadata,
    Partition { topic: [u8; 16], partition: i32 },
}

const METADATA_TAG: u8 = 0;
const PARTITION_TAG: u8 = 1;

impl GroupId {
    /// Bytes of the encoded form.
    pub const MAX_ENCODED_LEN: usize = 1 + 16 + 4;

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            GroupId::Metadata => out.push(METADATA_TAG),
            GroupId::Partition { topic, partition } => {
                out.push(PARTITION_TAG);
                out.extend_from_slice(topic);
                out.extend_from_slice(&partition.to_be_bytes());
            }
        }
    }

    /// Decodes a group id from the front of `bytes`, returning it and the rest.
    pub fn decode(bytes: &[u8]) -> Option<(GroupId, &[u8])> {
        match bytes.split_first()? {
            (&METADATA_TAG, rest) => Some((GroupId::Metadata, rest)),
            (&PARTITION_TAG, rest) if rest.len() >= 20 => {
                let (topic, rest) = rest.split_at(16);
                let (partition, rest) = rest.split_at(4);
                let topic = topic.try_into().ok()?;
                let partition = i32::from_be_bytes(partition.try_into().ok()?);
                Some((GroupId::Partition { topic, partition }, rest))
            }
            _ => None,
        }
    }

    /// The name prefix of this group's files in the broker's flat disk namespace.
    pub fn file_prefix(&self) -> String {
        match self {
            GroupId::Metadata => "metadata.".to_string(),
            GroupId::Partition { topic, partition } => format!("p-{}-{partition}.", hex(topic)),
        }
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupId::Metadata => write!(f, "metadata"),
            GroupId::Partition { topic, partition } => write!(f, "{}-{partition}", &hex(topic)[..8]),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids_round_trip_and_garbage_is_refused() {
        for id in [GroupId::Metadata, GroupId::Partition { topic: [7; 16], partition: 3 }] {
            let mut buf = Vec::new();
            id.encode(&mut buf);
            buf.extend_from_slice(b"rest");
            assert_eq!(GroupId::decode(&buf), Some((id, &b"rest"[..])));
        }
        assert_eq!(GroupId::decode(&[]), None);
        assert_eq!(GroupId::decode(&[PARTITION_TAG, 1, 2]), None);
        assert_eq!(GroupId::decode(&[9]), None);
    }
}
