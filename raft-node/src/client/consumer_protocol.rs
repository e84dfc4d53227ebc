//! The consumer protocol's bytes, which the coordinator passes on without
//! reading: a member's subscription (its JoinGroup metadata) and its
//! assignment (the leader's SyncGroup payload), each a version then the body;
//! and the range assignor the group leader runs over them.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment, ConsumerProtocolAssignment, ConsumerProtocolSubscription,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{str_bytes, topic_name, Error};

/// The versions written; any of 0..=3 is read.
const SUBSCRIPTION_VERSION: i16 = 0;
const ASSIGNMENT_VERSION: i16 = 0;
const NEWEST_VERSION: i16 = 3;

/// Topic and partitions, by topic.
pub type Assignment = BTreeMap<String, Vec<i32>>;

fn with_version(version: i16, body: impl Encodable) -> Result<Bytes, Error> {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    body.encode(&mut buf, version).map_err(|e| Error::Encode(e.to_string()))?;
    Ok(buf.freeze())
}

/// Splits off the version and decodes the body at it (a newer version than
/// we know is read as the newest: later versions only append fields).
fn versioned<T: Decodable>(bytes: &Bytes) -> Option<T> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    T::decode(&mut buf, version.clamp(0, NEWEST_VERSION)).ok()
}

pub fn encode_subscription(topics: &[String]) -> Result<Bytes, Error> {
    let subscription =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| str_bytes(t)).collect());
    with_version(SUBSCRIPTION_VERSION, subscription)
}

/// The topics a subscription names; `None` when it does not decode.
pub fn decode_subscription(bytes: &Bytes) -> Option<Vec<String>> {
    let subscription: ConsumerProtocolSubscription = versioned(bytes)?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes, Error> {
    let assigned = assignment.iter().map(|(topic, partitions)| {
        consumer_protocol_assignment::TopicPartition::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions.clone())
    });
    with_version(ASSIGNMENT_VERSION, ConsumerProtocolAssignment::default().with_assigned_partitions(assigned.collect()))
}

/// The partitions an assignment names; `None` when it does not decode.
pub fn decode_assignment(bytes: &Bytes) -> Option<Assignment> {
    let assignment: ConsumerProtocolAssignment = versioned(bytes)?;
    let mut partitions = Assignment::new();
    for tp in assignment.assigned_partitions {
        partitions.entry(tp.topic.to_string()).or_default().extend(tp.partitions);
    }
    Some(partitions)
}

/// Kafka's range assignor: for each topic, its subscribers in member id order
/// take consecutive ranges of its partitions, the first `partitions % members`
/// one more. `subscriptions` is each member's topics; `partitions` each
/// topic's partition count (a topic missing there is left out). Every member
/// gets an entry, maybe empty.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut assignments: BTreeMap<String, Assignment> =
        subscriptions.keys().map(|member| (member.clone(), Assignment::new())).collect();
    for (topic, &count) in partitions {
        let subscribers: Vec<&String> =
            subscriptions.iter().filter(|(_, topics)| topics.contains(topic)).map(|(member, _)| member).collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let members = subscribers.len() as i32;
        let (each, extra) = (count / members, count % members);
        let mut next = 0;
        for (i, member) in subscribers.into_iter().enumerate() {
            let take = each + i32::from((i as i32) < extra);
            if take > 0 {
                let range = (next..next + take).collect();
                assignments.entry(member.clone()).or_default().insert(topic.clone(), range);
            }
            next += take;
        }
    }
    assignments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ids: &[&str], topics: &[&str]) -> BTreeMap<String, Vec<String>> {
        ids.iter().map(|id| (id.to_string(), topics.iter().map(|t| t.to_string()).collect())).collect()
    }

    #[test]
    fn range_gives_the_first_members_one_more() {
        let partitions = BTreeMap::from([("t".to_string(), 8)]);
        let assigned = range_assign(&members(&["c", "a", "b"], &["t"]), &partitions);
        let of = |m: &str| assigned[m].get("t").cloned().unwrap_or_default();
        assert_eq!((of("a"), of("b"), of("c")), (vec![0, 1, 2], vec![3, 4, 5], vec![6, 7]));
    }

    #[test]
    fn range_covers_every_partition_once_and_leaves_extra_members_empty() {
        for count in 0..10 {
            for n in 1..6 {
                let ids: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                let partitions = BTreeMap::from([("t".to_string(), count), ("other".to_string(), 3)]);
                let assigned = range_assign(&members(&ids, &["t"]), &partitions);
                assert_eq!(assigned.len(), n);
                let mut all: Vec<i32> =
                    assigned.values().flat_map(|a| a.get("t").cloned().unwrap_or_default()).collect();
                all.sort();
                assert_eq!(all, (0..count).collect::<Vec<_>>(), "{count} partitions over {n}");
                assert!(assigned.values().all(|a| !a.contains_key("other")), "nobody subscribed to it");
                let sizes: Vec<usize> = assigned.values().map(|a| a.get("t").map_or(0, Vec::len)).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let topics = vec!["a".to_string(), "b".to_string()];
        assert_eq!(decode_subscription(&encode_subscription(&topics).unwrap()), Some(topics));
        let assignment = Assignment::from([("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]);
        assert_eq!(decode_assignment(&encode_assignment(&assignment).unwrap()), Some(assignment));
        assert_eq!(decode_assignment(&Bytes::from_static(&[0])), None);
        assert_eq!(decode_subscription(&Bytes::new()), None);
    }
}
