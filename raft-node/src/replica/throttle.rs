//! The bandwidth limit on moving replicas: a replica a move adds starts
//! empty and copies the partition's whole log as a learner, and unlimited it
//! takes the disk and the network from produce traffic (docs/BENCHMARKS.md).
//!
//! Catch-up traffic (appends and snapshots) to a learner leaves only while
//! the broker's allowance lasts, shared by every group it leads; the rest is
//! held and sent on later ticks, in order per destination, one message per
//! destination in turn. Raft counts a held message as in flight, so a
//! learner's small inflight window (`LEARNER_INFLIGHT`) bounds what is held.
//! Voters are never held back, except an append queued behind held ones to
//! a learner just promoted (the order keeps it from arriving with a gap).
//! Pure: the node ticks it and routes its outbox through it.

use std::collections::{BTreeMap, VecDeque};

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use crate::group_id::GroupId;

/// Appends (of up to `max_size_per_msg` each) a learner may have in flight
/// while the throttle is on: enough to keep it streaming, few enough that
/// holding them costs little memory.
pub const LEARNER_INFLIGHT: usize = 8;

#[derive(Debug, Default)]
pub struct Throttle {
    /// `None`: no limit (what is still held leaves at once).
    per_tick: Option<u64>,
    /// What may still leave this tick. A message larger than what is left
    /// leaves anyway and the debt is paid from later ticks, so the rate
    /// holds on average and no message is held forever.
    allowance: i64,
    /// By group and destination raft id: messages with their sizes.
    held: BTreeMap<(GroupId, u64), VecDeque<(u64, Message)>>,
    held_bytes: u64,
}

impl Throttle {
    /// A limit of `per_tick` bytes per tick (at least 1), or none; nothing
    /// is allowed before the first tick.
    pub fn new(per_tick: Option<u64>) -> Self {
        let mut throttle = Throttle::default();
        throttle.set_limit(per_tick);
        throttle
    }

    /// Changes the limit (an operator set another rate); takes effect from
    /// the next tick.
    pub fn set_limit(&mut self, per_tick: Option<u64>) {
        self.per_tick = per_tick.map(|n| n.max(1));
        if let Some(n) = self.per_tick {
            self.allowance = self.allowance.min(n as i64);
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.per_tick
    }

    /// A tick's worth more allowance; none saved up beyond one tick, so a
    /// quiet stretch is not followed by a burst.
    pub fn tick(&mut self) {
        let per_tick = self.per_tick.map_or(i64::MAX, |n| n as i64);
        self.allowance = self.allowance.saturating_add(per_tick).min(per_tick);
    }

    /// `message` of `group`, if it may leave now; `None` if it is held.
    /// `to_learner`: its destination is a learner of the group.
    pub fn admit(&mut self, group: GroupId, message: Message, to_learner: bool) -> Option<Message> {
        if !is_catch_up(&message) {
            return Some(message);
        }
        let size = u64::from(message.compute_size());
        let key = (group, message.to);
        if let Some(queue) = self.held.get_mut(&key) {
            queue.push_back((size, message));
            self.held_bytes += size;
            return None;
        }
        if !to_learner {
            return Some(message);
        }
        if self.allowance > 0 {
            self.allowance -= size as i64;
            return Some(message);
        }
        self.held.entry(key).or_default().push_back((size, message));
        self.held_bytes += size;
        None
    }

    /// The held messages the allowance now covers, taking one from each
    /// destination in turn.
    pub fn release(&mut self) -> Vec<(GroupId, Message)> {
        let Throttle { allowance, held, held_bytes, .. } = self;
        let mut out = Vec::new();
        while *allowance > 0 && !held.is_empty() {
            for (&(group, _), queue) in held.iter_mut() {
                if *allowance <= 0 {
                    break;
                }
                if let Some((size, message)) = queue.pop_front() {
                    *allowance -= size as i64;
                    *held_bytes -= size;
                    out.push((group, message));
                }
            }
            held.retain(|_, queue| !queue.is_empty());
        }
        out
    }

    /// Drops what is held for the groups `keep` refuses (no longer led
    /// here: raft resends what a new leader's followers lack).
    pub fn retain(&mut self, keep: impl Fn(&GroupId) -> bool) {
        let Throttle { held, held_bytes, .. } = self;
        held.retain(|(group, _), queue| {
            let kept = keep(group);
            if !kept {
                *held_bytes -= queue.iter().map(|(size, _)| size).sum::<u64>();
            }
            kept
        });
    }

    /// Bytes waiting for allowance.
    pub fn held_bytes(&self) -> u64 {
        self.held_bytes
    }
}

fn is_catch_up(message: &Message) -> bool {
    matches!(message.get_msg_type(), MessageType::MsgAppend | MessageType::MsgSnapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    const GROUP: GroupId = GroupId::Metadata;

    fn append(to: u64, index: u64, bytes: usize) -> Message {
        let mut m = Message { to, msg_type: MessageType::MsgAppend, ..Default::default() };
        m.entries = vec![Entry { index, data: vec![0; bytes].into(), ..Default::default() }].into();
        m
    }

    fn index(m: &Message) -> u64 {
        m.entries[0].index
    }

    #[test]
    fn voters_pass_while_a_learner_waits() {
        let mut throttle = Throttle::new(Some(1_000));
        throttle.tick();
        assert!(throttle.admit(GROUP, append(3, 1, 2_000), true).is_some(), "the allowance is spent");
        assert!(throttle.admit(GROUP, append(3, 2, 2_000), true).is_none(), "held");
        assert!(throttle.admit(GROUP, append(2, 2, 50_000), false).is_some(), "a voter's append leaves");
        // The learner is promoted: its next append still queues behind the held one.
        assert!(throttle.admit(GROUP, append(3, 3, 10), false).is_none());
        let mut order = Vec::new();
        for _ in 0..10 {
            throttle.tick();
            order.extend(throttle.release().into_iter().map(|(_, m)| index(&m)));
        }
        assert_eq!(order, vec![2, 3]);
        assert!(throttle.admit(GROUP, append(3, 4, 10), false).is_some(), "nothing held any more");
    }

    #[test]
    fn a_learner_offered_more_than_the_rate_gets_the_rate() {
        let per_tick = 10_000;
        let mut throttle = Throttle::new(Some(per_tick));
        let (mut offered, mut delivered) = (0, Vec::new());
        let mut next = 1;
        let ticks = 100;
        for _ in 0..ticks {
            throttle.tick();
            delivered.extend(throttle.release().into_iter().map(|(_, m)| m));
            for _ in 0..5 {
                let m = append(3, next, 4_000);
                offered += u64::from(m.compute_size());
                delivered.extend(throttle.admit(GROUP, m, true));
                next += 1;
            }
        }
        let indices: Vec<u64> = delivered.iter().map(index).collect();
        assert!(indices.windows(2).all(|w| w[0] + 1 == w[1]), "every message, in order, no gap");
        let bytes: u64 = delivered.iter().map(|m| u64::from(m.compute_size())).sum();
        let one = u64::from(append(3, next, 4_000).compute_size());
        assert!(bytes <= per_tick * ticks + one, "{bytes} bytes in {ticks} ticks");
        assert!(bytes + one > per_tick * ticks, "and the allowance was used: {bytes}");
        assert_eq!(throttle.held_bytes(), offered - bytes);
    }

    #[test]
    fn destinations_take_turns_and_heartbeats_are_never_held() {
        let mut throttle = Throttle::new(Some(200));
        throttle.tick();
        assert!(throttle.admit(GROUP, append(2, 1, 1_000), true).is_some(), "the allowance is spent");
        for i in 2..=4 {
            assert!(throttle.admit(GROUP, append(2, i, 100), true).is_none());
            assert!(throttle.admit(GROUP, append(3, i, 100), true).is_none());
        }
        let heartbeat = Message { to: 2, msg_type: MessageType::MsgHeartbeat, ..Default::default() };
        assert!(throttle.admit(GROUP, heartbeat, true).is_some());
        let mut order = Vec::new();
        for _ in 0..300 {
            throttle.tick();
            order.extend(throttle.release().into_iter().map(|(_, m)| (m.to, index(&m))));
        }
        assert_eq!(order, vec![(2, 2), (3, 2), (2, 3), (3, 3), (2, 4), (3, 4)]);
        assert_eq!(throttle.held_bytes(), 0);
    }

    #[test]
    fn a_new_limit_applies_from_the_next_tick() {
        let mut throttle = Throttle::new(Some(100));
        throttle.tick();
        for i in 1..=5 {
            throttle.admit(GROUP, append(2, i, 100), true);
        }
        assert_eq!(throttle.release().len(), 0, "the first append spent the allowance");
        throttle.set_limit(None);
        assert_eq!(throttle.limit(), None);
        throttle.tick();
        let released: Vec<u64> = throttle.release().iter().map(|(_, m)| index(m)).collect();
        assert_eq!(released, vec![2, 3, 4, 5], "no limit: everything held leaves, in order");
        assert!(throttle.admit(GROUP, append(2, 6, 100_000), true).is_some());
        throttle.set_limit(Some(100));
        assert!(throttle.admit(GROUP, append(2, 7, 1_000), true).is_some(), "a tick's allowance at most");
        assert!(throttle.admit(GROUP, append(2, 8, 10), true).is_none(), "limited again");
    }

    #[test]
    fn a_group_no_longer_led_drops_what_it_held() {
        let other = GroupId::Partition { topic: [7; 16], partition: 0 };
        let mut throttle = Throttle::new(Some(200));
        throttle.tick();
        assert!(throttle.admit(GROUP, append(2, 1, 1_000), true).is_some());
        throttle.admit(GROUP, append(2, 2, 100), true);
        throttle.admit(other, append(2, 1, 100), true);
        let one = u64::from(append(2, 1, 100).compute_size());
        assert_eq!(throttle.held_bytes(), 2 * one, "the allowance was spent by the first");
        throttle.retain(|g| *g == other);
        assert_eq!(throttle.held_bytes(), one);
        let mut released = Vec::new();
        for _ in 0..10 {
            throttle.tick();
            released.extend(throttle.release().into_iter().map(|(group, _)| group));
        }
        assert_eq!(released, vec![other]);
    }
}
