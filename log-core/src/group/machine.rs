//! The coordinator of the groups of one offsets partition: members, generations
//! and rebalances of Kafka's classic protocol. Assignment itself is the
//! client's (range, roundrobin, cooperative-sticky ...): the coordinator picks a
//! protocol every member supports, hands the leader every member's metadata,
//! and passes the leader's assignment on.

use std::collections::BTreeMap;

use super::{
    GroupDescription, GroupState, JoinRequest, JoinResponse, JoinedMember, Leaving, MemberDescription, Protocol,
    Replies, Reply, SyncRequest, SyncResponse, Token, MAX_SESSION_TIMEOUT_MS, MIN_SESSION_TIMEOUT_MS,
};
use crate::ErrorCode;

struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<Protocol>,
    assignment: Vec<u8>,
    /// Its JoinGroup waiting for the rebalance to complete.
    awaiting_join: Option<Token>,
    /// Its SyncGroup waiting for the leader's assignment.
    awaiting_sync: Option<Token>,
    /// When its session ends unless it is heard from.
    expires_at: i64,
}

impl Member {
    fn metadata_for(&self, protocol: Option<&str>) -> Vec<u8> {
        let chosen = self.protocols.iter().find(|p| Some(p.name.as_str()) == protocol);
        chosen.map(|p| p.metadata.clone()).unwrap_or_default()
    }

    fn touch(&mut self, now: i64) {
        self.expires_at = now + i64::from(self.session_timeout_ms);
    }
}

#[derive(Default)]
struct Group {
    generation: i32,
    rebalancing: Option<Phase>,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending: BTreeMap<String, i64>,
    /// Static members: instance id to current member id.
    instances: BTreeMap<String, String>,
    /// When a rebalance stops waiting for members to rejoin.
    rebalance_deadline: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for every member to (re)join.
    Joining,
    /// Generation formed; waiting for the leader's assignment.
    Syncing,
}

impl Group {
    fn state(&self) -> GroupState {
        match self.rebalancing {
            Some(Phase::Joining) => GroupState::PreparingRebalance,
            Some(Phase::Syncing) => GroupState::CompletingRebalance,
            None if self.members.is_empty() => GroupState::Empty,
            None => GroupState::Stable,
        }
    }

    /// Whether a joining member's protocols fit the group's.
    fn accepts(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        self.members.values().all(|m| m.protocol_type == protocol_type)
            && protocols.iter().any(|p| self.members.values().all(|m| m.protocols.iter().any(|q| q.name == p.name)))
    }

    /// The protocol every member supports that most members prefer (Kafka's vote).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|q| q.name == *name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(p) = member.protocols.iter().find(|p| candidates.contains(&p.name.as_str())) {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        // The first candidate (in the first member's order) among the most voted.
        let most = votes.values().copied().max()?;
        candidates.into_iter().find(|c| votes.get(c) == Some(&most)).map(str::to_string)
    }

    fn join_response(&self, member_id: &str) -> JoinResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|(id, m)| JoinedMember {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(self.protocol.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: ErrorCode::None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    fn sync_response(&self, assignment: Vec<u8>) -> SyncResponse {
        SyncResponse {
            error: ErrorCode::None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment,
        }
    }

    /// Starts a rebalance (or keeps the one under way): pending syncs are
    /// told to rejoin, and the group waits for every member's JoinGroup.
    fn prepare_rebalance(&mut self, now: i64, replies: &mut Replies) {
        for m in self.members.values_mut() {
            if let Some(token) = m.awaiting_sync.take() {
                replies.push((token, Reply::Sync(SyncResponse::error(ErrorCode::RebalanceInProgress))));
            }
        }
        if self.rebalancing != Some(Phase::Joining) {
            let longest = self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0);
            self.rebalance_deadline = now + longest;
            self.rebalancing = Some(Phase::Joining);
        }
        self.maybe_complete_join(now, replies);
    }

    /// Forms the next generation once every member has rejoined and no
    /// handed-out member id is still expected.
    fn maybe_complete_join(&mut self, now: i64, replies: &mut Replies) {
        let all_joined = self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending.is_empty();
        if self.rebalancing == Some(Phase::Joining) && all_joined {
            self.complete_join(now, replies);
        }
    }

    fn complete_join(&mut self, now: i64, replies: &mut Replies) {
        self.generation += 1;
        if self.members.is_empty() {
            self.rebalancing = None;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        self.rebalancing = Some(Phase::Syncing);
        self.protocol_type = self.members.values().next().map(|m| m.protocol_type.clone());
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id);
            if let Some(m) = self.members.get_mut(&id) {
                m.assignment.clear();
                m.touch(now);
                if let Some(token) = m.awaiting_join.take() {
                    replies.push((token, Reply::Join(response)));
                }
            }
        }
    }

    /// Removes a member, answering anything it still waits on, and rebalances
    /// the rest.
    fn remove_member(&mut self, now: i64, member_id: &str, error: ErrorCode, replies: &mut Replies) {
        let Some(member) = self.members.remove(member_id) else { return };
        if let Some(instance) = &member.instance_id {
            self.instances.remove(instance);
        }
        if let Some(token) = member.awaiting_join {
            replies.push((token, Reply::Join(JoinResponse::error(error, member_id))));
        }
        if let Some(token) = member.awaiting_sync {
            replies.push((token, Reply::Sync(SyncResponse::error(error))));
        }
        self.prepare_rebalance(now, replies);
    }

    /// The member a request names, checking a static member's instance id:
    /// an instance now held by another member id is fenced (KIP-345).
    fn member_of(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ErrorCode> {
        if let Some(instance) = instance_id {
            match self.instances.get(instance) {
                Some(current) if current != member_id => return Err(ErrorCode::FencedInstanceId),
                Some(_) => {}
                None if self.members.contains_key(member_id) => return Err(ErrorCode::FencedInstanceId),
                None => return Err(ErrorCode::UnknownMemberId),
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ErrorCode::UnknownMemberId)
        }
    }

    fn tick(&mut self, now: i64, replies: &mut Replies) {
        self.pending.retain(|_, &mut expires_at| expires_at > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| m.expires_at <= now && m.awaiting_join.is_none() && m.awaiting_sync.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove_member(now, &id, ErrorCode::UnknownMemberId, replies);
        }
        if self.rebalancing == Some(Phase::Joining) && now >= self.rebalance_deadline {
            // Members that did not rejoin in time are out of the generation.
            let absent: Vec<String> =
                self.members.iter().filter(|(_, m)| m.awaiting_join.is_none()).map(|(id, _)| id.clone()).collect();
            for id in absent {
                if let Some(m) = self.members.remove(&id) {
                    if let Some(instance) = &m.instance_id {
                        self.instances.remove(instance);
                    }
                }
            }
            self.pending.clear();
            self.complete_join(now, replies);
        }
    }
}

/// The groups one coordinator serves.
pub struct Groups {
    groups: BTreeMap<String, Group>,
    /// Makes member ids unique across coordinators: the caller's incarnation.
    member_prefix: String,
    members_created: u64,
}

impl Groups {
    /// `member_prefix` must differ between coordinator incarnations of the
    /// same groups (e.g. hold the raft term), so a member id is never reused.
    pub fn new(member_prefix: &str) -> Self {
        Groups { groups: BTreeMap::new(), member_prefix: member_prefix.to_string(), members_created: 0 }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.members_created += 1;
        format!("{client_id}-{}-{}", self.member_prefix, self.members_created)
    }

    pub fn join(&mut self, now: i64, token: Token, request: JoinRequest) -> Replies {
        let mut replies = Vec::new();
        match self.try_join(now, token, request, &mut replies) {
            Ok(()) => {}
            Err((error, member_id)) => replies.push((token, Reply::Join(JoinResponse::error(error, &member_id)))),
        }
        replies
    }

    fn try_join(
        &mut self,
        now: i64,
        token: Token,
        request: JoinRequest,
        replies: &mut Replies,
    ) -> Result<(), (ErrorCode, String)> {
        let fail = |error| Err((error, request.member_id.clone()));
        if request.group_id.is_empty() {
            return fail(ErrorCode::InvalidGroupId);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&request.session_timeout_ms) {
            return fail(ErrorCode::InvalidSessionTimeout);
        }
        let acceptable = match self.groups.get(&request.group_id) {
            Some(group) => group.accepts(&request.protocol_type, &request.protocols),
            None if !request.member_id.is_empty() => return fail(ErrorCode::UnknownMemberId),
            None => !request.protocol_type.is_empty() && !request.protocols.is_empty(),
        };
        if !acceptable {
            return fail(ErrorCode::InconsistentGroupProtocol);
        }
        let new_id = if request.member_id.is_empty() { Some(self.new_member_id(&request.client_id)) } else { None };
        let group = self.groups.entry(request.group_id.clone()).or_default();
        let member_id = match (new_id, &request.instance_id) {
            // A static member back under a new id takes over its instance's
            // membership; whatever the old id waited on is fenced.
            (Some(id), Some(instance)) if group.instances.contains_key(instance) => {
                let old_id = group.instances.get(instance).cloned().unwrap_or_default();
                let Some(mut member) = group.members.remove(&old_id) else { return fail(ErrorCode::UnknownMemberId) };
                if let Some(token) = member.awaiting_join.take() {
                    replies.push((token, Reply::Join(JoinResponse::error(ErrorCode::FencedInstanceId, &old_id))));
                }
                if let Some(token) = member.awaiting_sync.take() {
                    replies.push((token, Reply::Sync(SyncResponse::error(ErrorCode::FencedInstanceId))));
                }
                let unchanged = member.protocols == request.protocols;
                group.members.insert(id.clone(), member);
                group.instances.insert(instance.clone(), id.clone());
                let was_leader = group.leader.as_deref() == Some(old_id.as_str());
                if was_leader {
                    group.leader = Some(id.clone());
                }
                // A follower returning unchanged to a stable group keeps its
                // assignment: no rebalance (the point of static membership).
                if group.state() == GroupState::Stable && unchanged && !was_leader {
                    if let Some(m) = group.members.get_mut(&id) {
                        m.touch(now);
                    }
                    replies.push((token, Reply::Join(group.join_response(&id))));
                    return Ok(());
                }
                id
            }
            (Some(id), None) if request.require_known_member => {
                group.pending.insert(id.clone(), now + i64::from(request.session_timeout_ms));
                return Err((ErrorCode::MemberIdRequired, id));
            }
            (Some(id), _) => id,
            (None, instance) => {
                let known = group.members.contains_key(&request.member_id);
                if !known && !group.pending.contains_key(&request.member_id) {
                    return fail(ErrorCode::UnknownMemberId);
                }
                if known {
                    group
                        .member_of(&request.member_id, instance.as_deref())
                        .map_err(|e| (e, request.member_id.clone()))?;
                }
                request.member_id.clone()
            }
        };
        group.pending.remove(&member_id);
        let previous = group.members.get(&member_id).map(|m| m.protocols.clone());
        // A known member rejoining unchanged while no rebalance needs it (its
        // JoinGroup answer was lost) gets the current generation again.
        if previous.as_ref() == Some(&request.protocols) && group.rebalancing != Some(Phase::Joining) {
            let is_leader = group.leader.as_deref() == Some(member_id.as_str());
            if group.rebalancing == Some(Phase::Syncing) || !is_leader {
                if let Some(m) = group.members.get_mut(&member_id) {
                    m.touch(now);
                }
                replies.push((token, Reply::Join(group.join_response(&member_id))));
                return Ok(());
            }
        }
        if let Some(old) = group.members.get_mut(&member_id).and_then(|m| m.awaiting_join.replace(token)) {
            replies.push((old, Reply::Join(JoinResponse::error(ErrorCode::RebalanceInProgress, &member_id))));
        }
        let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
            instance_id: request.instance_id.clone(),
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocol_type: String::new(),
            protocols: Vec::new(),
            assignment: Vec::new(),
            awaiting_join: Some(token),
            awaiting_sync: None,
            expires_at: 0,
        });
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms.max(request.session_timeout_ms);
        member.protocol_type = request.protocol_type;
        member.protocols = request.protocols;
        member.touch(now);
        if let Some(instance) = request.instance_id {
            group.instances.insert(instance, member_id);
        }
        group.prepare_rebalance(now, replies);
        Ok(())
    }

    pub fn sync(&mut self, now: i64, token: Token, request: SyncRequest) -> Replies {
        let mut replies = Vec::new();
        let error = |e| vec![(token, Reply::Sync(SyncResponse::error(e)))];
        let Some(group) = self.groups.get_mut(&request.group_id) else { return error(ErrorCode::UnknownMemberId) };
        if let Err(e) = group.member_of(&request.member_id, request.instance_id.as_deref()) {
            return error(e);
        }
        if request.generation != group.generation {
            return error(ErrorCode::IllegalGeneration);
        }
        let mismatch = |asked: &Option<String>, have: &Option<String>| asked.is_some() && asked != have;
        if mismatch(&request.protocol_type, &group.protocol_type) || mismatch(&request.protocol_name, &group.protocol) {
            return error(ErrorCode::InconsistentGroupProtocol);
        }
        match group.rebalancing {
            Some(Phase::Joining) => return error(ErrorCode::RebalanceInProgress),
            None => {
                let member = group.members.get_mut(&request.member_id);
                let assignment = member.map(|m| {
                    m.touch(now);
                    m.assignment.clone()
                });
                return vec![(token, Reply::Sync(group.sync_response(assignment.unwrap_or_default())))];
            }
            Some(Phase::Syncing) => {}
        }
        if let Some(m) = group.members.get_mut(&request.member_id) {
            m.touch(now);
            if let Some(old) = m.awaiting_sync.replace(token) {
                replies.push((old, Reply::Sync(SyncResponse::error(ErrorCode::RebalanceInProgress))));
            }
        }
        if group.leader.as_deref() == Some(request.member_id.as_str()) {
            let mut assignments: BTreeMap<String, Vec<u8>> = request.assignments.into_iter().collect();
            let ids: Vec<String> = group.members.keys().cloned().collect();
            for id in ids {
                let assignment = assignments.remove(&id).unwrap_or_default();
                let response = group.sync_response(assignment.clone());
                if let Some(m) = group.members.get_mut(&id) {
                    m.assignment = assignment;
                    if let Some(waiting) = m.awaiting_sync.take() {
                        replies.push((waiting, Reply::Sync(response)));
                    }
                }
            }
            group.rebalancing = None;
        }
        replies
    }

    pub fn heartbeat(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> ErrorCode {
        let Some(group) = self.groups.get_mut(group_id) else { return ErrorCode::UnknownMemberId };
        if let Err(e) = group.member_of(member_id, instance_id) {
            return e;
        }
        if generation != group.generation {
            return ErrorCode::IllegalGeneration;
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.touch(now);
        }
        match group.rebalancing {
            Some(Phase::Joining) => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// LeaveGroup: an error per leaving member, and the answers the leaving
    /// let through (a rebalance that no longer waits for them).
    pub fn leave(&mut self, now: i64, group_id: &str, leaving: &[Leaving]) -> (Vec<ErrorCode>, Replies) {
        let mut replies = Vec::new();
        let Some(group) = self.groups.get_mut(group_id) else {
            return (vec![ErrorCode::UnknownMemberId; leaving.len()], replies);
        };
        let mut errors = Vec::new();
        for l in leaving {
            let id = match &l.instance_id {
                Some(instance) => match group.instances.get(instance) {
                    Some(current) if l.member_id.is_empty() || *current == l.member_id => Ok(current.clone()),
                    Some(_) => Err(ErrorCode::FencedInstanceId),
                    None => Err(ErrorCode::UnknownMemberId),
                },
                None if group.members.contains_key(&l.member_id) => Ok(l.member_id.clone()),
                None => Err(ErrorCode::UnknownMemberId),
            };
            errors.push(match id {
                Ok(id) => {
                    group.remove_member(now, &id, ErrorCode::UnknownMemberId, &mut replies);
                    ErrorCode::None
                }
                Err(e) => e,
            });
        }
        (errors, replies)
    }

    /// Expires sessions and rebalances that ran out of time.
    pub fn tick(&mut self, now: i64) -> Replies {
        let mut replies = Vec::new();
        for group in self.groups.values_mut() {
            group.tick(now, &mut replies);
        }
        replies
    }

    /// Whether an OffsetCommit from this member may be written (Kafka's
    /// rules): a generation of -1 with no member commits for a group that
    /// has no members (a standalone consumer, or an admin resetting offsets).
    pub fn check_commit(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ErrorCode> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return if generation < 0 { Ok(()) } else { Err(ErrorCode::IllegalGeneration) };
        };
        if generation < 0 && group.state() == GroupState::Empty {
            return Ok(());
        }
        group.member_of(member_id, instance_id)?;
        if group.rebalancing == Some(Phase::Syncing) {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if generation != group.generation {
            return Err(ErrorCode::IllegalGeneration);
        }
        if let Some(m) = group.members.get_mut(member_id) {
            m.touch(now);
        }
        Ok(())
    }

    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        let members = group
            .members
            .iter()
            .map(|(id, m)| MemberDescription {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(group.protocol.as_deref()),
                assignment: m.assignment.clone(),
            })
            .collect();
        Some(GroupDescription {
            state: group.state(),
            generation: group.generation,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: group.protocol.clone().unwrap_or_default(),
            members,
        })
    }

    /// Every group this coordinator knows: id, protocol type, state.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let group = |(id, g): (&String, &Group)| (id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state());
        self.groups.iter().map(group).collect()
    }
}

#[cfg(test)]
mod tests;
