use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn join(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        instance_id: instance.map(str::to_string),
        client_id: "c".into(),
        client_host: "/h".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| Protocol { name: p.to_string(), metadata: p.as_bytes().to_vec() })
            .collect(),
        require_known_member: instance.is_none(),
    }
}

fn sync(member_id: &str, generation: i32, assignments: Vec<(String, Vec<u8>)>) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        instance_id: None,
        generation,
        protocol_type: None,
        protocol_name: None,
        assignments,
    }
}

fn joined(replies: &Replies, token: Token) -> Option<&JoinResponse> {
    replies.iter().find_map(|(t, r)| match r {
        Reply::Join(j) if *t == token => Some(j),
        _ => None,
    })
}

fn synced(replies: &Replies, token: Token) -> Option<&SyncResponse> {
    replies.iter().find_map(|(t, r)| match r {
        Reply::Sync(s) if *t == token => Some(s),
        _ => None,
    })
}

/// A new dynamic member's id (the MEMBER_ID_REQUIRED round trip).
fn member_id(groups: &mut Groups, now: i64, token: Token) -> String {
    let replies = groups.join(now, token, join("", None, &["range"]));
    let response = joined(&replies, token).unwrap();
    assert_eq!(response.error, ErrorCode::MemberIdRequired);
    response.member_id.clone()
}

/// Forms a stable group of `n` dynamic members; returns their ids (the leader
/// first) and the generation.
fn stable_group(groups: &mut Groups, n: usize) -> (Vec<String>, i32) {
    let ids: Vec<String> = (0..n).map(|i| member_id(groups, 0, 100 + i as u64)).collect();
    let mut responses = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let replies = groups.join(0, i as u64, join(id, None, &["range"]));
        responses.extend(replies);
    }
    // The last join completes the rebalance: everyone is answered together.
    let answers: Vec<&JoinResponse> = (0..n as u64).map(|t| joined(&responses, t).unwrap()).collect();
    assert!(answers.iter().all(|a| a.error == ErrorCode::None));
    let generation = answers[0].generation;
    let leader = answers[0].leader.clone();
    assert!(answers.iter().all(|a| a.generation == generation && a.leader == leader));
    let leader_answer = answers.iter().find(|a| a.member_id == leader).unwrap();
    assert_eq!(leader_answer.members.len(), n);
    let assignments: Vec<(String, Vec<u8>)> = ids.iter().map(|id| (id.clone(), id.as_bytes().to_vec())).collect();
    let mut replies = Vec::new();
    for (i, id) in ids.iter().enumerate().filter(|(_, id)| **id != leader) {
        replies.extend(groups.sync(0, 200 + i as u64, sync(id, generation, vec![])));
    }
    let li = ids.iter().position(|id| *id == leader).unwrap();
    replies.extend(groups.sync(0, 200 + li as u64, sync(&leader, generation, assignments)));
    for (i, id) in ids.iter().enumerate() {
        let s = synced(&replies, 200 + i as u64).unwrap();
        assert_eq!((s.error, s.assignment.as_slice()), (ErrorCode::None, id.as_bytes()));
    }
    assert_eq!(groups.describe("g").unwrap().state, GroupState::Stable);
    let mut ordered = vec![leader.clone()];
    ordered.extend(ids.into_iter().filter(|id| *id != leader));
    (ordered, generation)
}

#[test]
fn members_form_a_generation_and_get_the_leaders_assignment() {
    let mut groups = Groups::new("t1");
    let (ids, generation) = stable_group(&mut groups, 3);
    assert_eq!(generation, 1);
    let all: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(all.len(), 3, "member ids are unique");
    for id in &ids {
        assert_eq!(groups.heartbeat(1, "g", id, None, generation), ErrorCode::None);
    }
    assert_eq!(groups.heartbeat(1, "g", &ids[0], None, generation + 1), ErrorCode::IllegalGeneration);
    assert_eq!(groups.heartbeat(1, "g", "stranger", None, generation), ErrorCode::UnknownMemberId);
}

#[test]
fn a_new_member_rebalances_the_group() {
    let mut groups = Groups::new("t1");
    let (ids, generation) = stable_group(&mut groups, 2);
    let new = member_id(&mut groups, 1, 50);
    assert!(groups.join(1, 51, join(&new, None, &["range"])).is_empty(), "waits for the others");
    for id in &ids {
        assert_eq!(groups.heartbeat(2, "g", id, None, generation), ErrorCode::RebalanceInProgress);
    }
    assert!(groups.join(3, 52, join(&ids[0], None, &["range"])).is_empty());
    let replies = groups.join(3, 53, join(&ids[1], None, &["range"]));
    for token in [51, 52, 53] {
        let r = joined(&replies, token).unwrap();
        assert_eq!((r.error, r.generation), (ErrorCode::None, generation + 1));
    }
    // The leader stays the leader and sees all three.
    assert_eq!(joined(&replies, 52).unwrap().members.len(), 3);
    assert_eq!(joined(&replies, 51).unwrap().leader, ids[0]);
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance_without_it() {
    let mut groups = Groups::new("t1");
    let (ids, generation) = stable_group(&mut groups, 3);
    let mut now = 0;
    // Two members heartbeat; the third has gone quiet.
    while now <= i64::from(SESSION) {
        now += 1_000;
        for id in &ids[..2] {
            groups.heartbeat(now, "g", id, None, generation);
        }
        assert!(groups.tick(now).is_empty());
    }
    assert_eq!(groups.describe("g").unwrap().state, GroupState::PreparingRebalance);
    assert_eq!(groups.heartbeat(now, "g", &ids[2], None, generation), ErrorCode::UnknownMemberId);
    groups.join(now, 1, join(&ids[0], None, &["range"]));
    let replies = groups.join(now, 2, join(&ids[1], None, &["range"]));
    let leader = joined(&replies, 1).unwrap();
    assert_eq!(leader.generation, generation + 1);
    let members: Vec<&str> = leader.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(members.len(), 2);
    assert!(!members.contains(&ids[2].as_str()));
}

#[test]
fn a_member_that_does_not_rejoin_in_time_is_dropped() {
    let mut groups = Groups::new("t1");
    let (ids, generation) = stable_group(&mut groups, 2);
    let new = member_id(&mut groups, 0, 50);
    groups.join(0, 51, join(&new, None, &["range"]));
    groups.join(0, 52, join(&ids[0], None, &["range"]));
    // ids[1] keeps heartbeating but never rejoins.
    let mut now = 0;
    let mut replies = Vec::new();
    while replies.is_empty() {
        now += 1_000;
        assert!(now <= i64::from(REBALANCE), "the rebalance ends by its timeout");
        groups.heartbeat(now, "g", &ids[1], None, generation);
        replies = groups.tick(now);
    }
    let r = joined(&replies, 52).unwrap();
    assert_eq!((r.generation, r.members.len()), (generation + 1, 2));
    assert_eq!(groups.heartbeat(now, "g", &ids[1], None, generation), ErrorCode::UnknownMemberId);
}

#[test]
fn leaving_rebalances_and_the_last_leaves_an_empty_group() {
    let mut groups = Groups::new("t1");
    let (ids, generation) = stable_group(&mut groups, 2);
    let leaving = |id: &str| vec![Leaving { member_id: id.into(), instance_id: None }];
    let (errors, replies) = groups.leave(1, "g", &leaving(&ids[1]));
    assert_eq!(errors, vec![ErrorCode::None]);
    assert!(replies.is_empty());
    assert_eq!(groups.heartbeat(1, "g", &ids[0], None, generation), ErrorCode::RebalanceInProgress);
    let (errors, _) = groups.leave(1, "g", &leaving(&ids[1]));
    assert_eq!(errors, vec![ErrorCode::UnknownMemberId]);
    groups.leave(2, "g", &leaving(&ids[0]));
    let d = groups.describe("g").unwrap();
    assert_eq!((d.state, d.members.len()), (GroupState::Empty, 0));
    assert!(groups.check_commit(3, "g", "", None, -1).is_ok(), "an empty group takes standalone commits");
}

#[test]
fn commits_need_the_current_generation_of_a_member() {
    let mut groups = Groups::new("t1");
    assert!(groups.check_commit(0, "g", "", None, -1).is_ok());
    assert_eq!(groups.check_commit(0, "g", "x", None, 3), Err(ErrorCode::IllegalGeneration));
    let (ids, generation) = stable_group(&mut groups, 2);
    assert!(groups.check_commit(1, "g", &ids[1], None, generation).is_ok());
    assert_eq!(groups.check_commit(1, "g", &ids[1], None, generation - 1), Err(ErrorCode::IllegalGeneration));
    assert_eq!(groups.check_commit(1, "g", "", None, -1), Err(ErrorCode::UnknownMemberId));
}

#[test]
fn the_protocol_is_one_every_member_supports() {
    let mut groups = Groups::new("t1");
    let a = member_id(&mut groups, 0, 90);
    let b = member_id(&mut groups, 0, 91);
    groups.join(0, 1, join(&a, None, &["cooperative-sticky", "range"]));
    let replies = groups.join(0, 2, join(&b, None, &["range", "roundrobin"]));
    assert_eq!(joined(&replies, 1).unwrap().protocol_name.as_deref(), Some("range"));
    let leader = joined(&replies, 1).unwrap();
    let metadata: Vec<&[u8]> = leader.members.iter().map(|m| m.metadata.as_slice()).collect();
    assert!(metadata.iter().all(|m| *m == b"range"), "the leader gets the chosen protocol's metadata");
    let c = member_id(&mut groups, 0, 92);
    let refused = groups.join(0, 3, join(&c, None, &["roundrobin"]));
    assert_eq!(joined(&refused, 3).unwrap().error, ErrorCode::InconsistentGroupProtocol);
}

#[test]
fn a_static_member_returns_without_a_rebalance_and_fences_its_old_id() {
    let mut groups = Groups::new("t1");
    let leader_id = member_id(&mut groups, 0, 90);
    groups.join(0, 1, join(&leader_id, None, &["range"]));
    // The leader's generation forms alone; the static member joins it.
    let replies = groups.join(0, 2, join("", Some("box-1"), &["range"]));
    assert!(replies.is_empty());
    let replies = groups.join(0, 3, join(&leader_id, None, &["range"]));
    let first = joined(&replies, 2).unwrap().clone();
    let generation = first.generation;
    groups.sync(0, 4, sync(&first.member_id, generation, vec![]));
    let replies = groups.sync(0, 5, sync(&leader_id, generation, vec![(first.member_id.clone(), b"mine".to_vec())]));
    assert_eq!(synced(&replies, 4).unwrap().assignment, b"mine");
    // Restarted under a new id: same generation, same assignment, no rebalance.
    let replies = groups.join(1, 6, join("", Some("box-1"), &["range"]));
    let again = joined(&replies, 6).unwrap();
    assert_eq!((again.error, again.generation), (ErrorCode::None, generation));
    assert_ne!(again.member_id, first.member_id);
    let replies = groups.sync(1, 7, sync(&again.member_id, generation, vec![]));
    assert_eq!(synced(&replies, 7).unwrap().assignment, b"mine");
    assert_eq!(groups.describe("g").unwrap().state, GroupState::Stable);
    assert_eq!(groups.heartbeat(1, "g", &first.member_id, Some("box-1"), generation), ErrorCode::FencedInstanceId);
}

#[test]
fn bad_joins_get_errors_not_members() {
    let mut groups = Groups::new("t1");
    let mut short = join("", None, &["range"]);
    short.session_timeout_ms = 10;
    assert_eq!(joined(&groups.join(0, 1, short), 1).unwrap().error, ErrorCode::InvalidSessionTimeout);
    assert_eq!(joined(&groups.join(0, 2, join("", None, &[])), 2).unwrap().error, ErrorCode::InconsistentGroupProtocol);
    assert_eq!(joined(&groups.join(0, 3, join("ghost", None, &["r"])), 3).unwrap().error, ErrorCode::UnknownMemberId);
    assert!(groups.list().is_empty());
}

/// Well-behaved clients under random crashes, arrivals and leaves: each token
/// is answered at most once, and once the faults stop the group settles into
/// one stable generation of exactly the live clients, each holding the
/// assignment the leader gave it.
#[test]
fn random_churn_settles_on_the_live_members() {
    let settled: Vec<usize> = (1..40u64).map(churn).collect();
    // The property is not vacuous: most runs end with several members.
    assert!(settled.iter().filter(|&&n| n >= 2).count() > 20, "{settled:?}");
}

#[derive(Clone, Debug, PartialEq)]
enum Phase2 {
    Idle,
    Joining(Token),
    Syncing(Token),
    Stable,
}

struct Client {
    id: String,
    generation: i32,
    phase: Phase2,
    alive: bool,
    assignment: Vec<u8>,
    /// The assignment to send, when leader.
    plan: Vec<(String, Vec<u8>)>,
}

fn churn(seed: u64) -> usize {
    let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move |n: u64| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) % n
    };
    let mut groups = Groups::new("t1");
    let mut clients: Vec<Client> = Vec::new();
    let mut answered = std::collections::BTreeSet::new();
    let mut token: Token = 0;
    let mut now = 0i64;
    for step in 0..600 {
        let faults = step < 300;
        now += 500;
        if faults {
            match next(20) {
                0 | 1 => clients.push(Client {
                    id: String::new(),
                    generation: -1,
                    phase: Phase2::Idle,
                    alive: true,
                    assignment: vec![],
                    plan: vec![],
                }),
                2 if !clients.is_empty() => {
                    let i = next(clients.len() as u64) as usize;
                    clients[i].alive = false;
                }
                3 if !clients.is_empty() => {
                    let i = next(clients.len() as u64) as usize;
                    if clients[i].alive && !clients[i].id.is_empty() {
                        let leaving = [Leaving { member_id: clients[i].id.clone(), instance_id: None }];
                        let (_, replies) = groups.leave(now, "g", &leaving);
                        deliver(&mut clients, &replies, &mut answered);
                        clients[i].alive = false;
                    }
                }
                _ => {}
            }
        }
        let replies = groups.tick(now);
        deliver(&mut clients, &replies, &mut answered);
        for i in 0..clients.len() {
            if !clients[i].alive {
                continue;
            }
            let mut replies = Vec::new();
            match clients[i].phase.clone() {
                Phase2::Idle => {
                    token += 1;
                    clients[i].phase = Phase2::Joining(token);
                    replies = groups.join(now, token, join(&clients[i].id, None, &["range"]));
                }
                Phase2::Stable => match groups.heartbeat(now, "g", &clients[i].id, None, clients[i].generation) {
                    ErrorCode::None => {}
                    ErrorCode::RebalanceInProgress => clients[i].phase = Phase2::Idle,
                    _ => {
                        clients[i].id.clear();
                        clients[i].phase = Phase2::Idle;
                    }
                },
                Phase2::Joining(_) | Phase2::Syncing(_) => {}
            }
            deliver(&mut clients, &replies, &mut answered);
            if let Some(request) = pending_sync(&mut clients[i]) {
                token += 1;
                clients[i].phase = Phase2::Syncing(token);
                let replies = groups.sync(now, token, request);
                deliver(&mut clients, &replies, &mut answered);
            }
        }
    }
    let live: Vec<&Client> = clients.iter().filter(|c| c.alive).collect();
    let d = groups.describe("g").unwrap();
    let expected_state = if live.is_empty() { GroupState::Empty } else { GroupState::Stable };
    assert_eq!(d.state, expected_state, "seed {seed}");
    let mut members: Vec<&str> = d.members.iter().map(|m| m.member_id.as_str()).collect();
    let mut live_ids: Vec<&str> = live.iter().map(|c| c.id.as_str()).collect();
    members.sort();
    live_ids.sort();
    assert_eq!(members, live_ids, "seed {seed}");
    for c in &live {
        assert_eq!((&c.phase, c.generation), (&Phase2::Stable, d.generation), "seed {seed}");
        assert_eq!(c.assignment, c.id.as_bytes(), "seed {seed}");
    }
    live.len()
}

/// A client that has its generation but no assignment yet syncs; the leader
/// assigns each member its own id.
fn pending_sync(client: &mut Client) -> Option<SyncRequest> {
    let plan = std::mem::take(&mut client.plan);
    (client.phase == Phase2::Joining(0)).then(|| sync(&client.id, client.generation, plan))
}

fn deliver(clients: &mut [Client], replies: &Replies, answered: &mut std::collections::BTreeSet<Token>) {
    for (token, reply) in replies {
        assert!(answered.insert(*token), "token {token} answered twice");
        let Some(c) =
            clients.iter_mut().find(|c| matches!(c.phase, Phase2::Joining(t) | Phase2::Syncing(t) if t == *token))
        else {
            continue;
        };
        match reply {
            Reply::Join(j) if j.error == ErrorCode::None => {
                c.id = j.member_id.clone();
                c.generation = j.generation;
                c.phase = Phase2::Joining(0);
                // The leader's plan: every member gets its own id.
                let plan = j.members.iter().map(|m| (m.member_id.clone(), m.member_id.as_bytes().to_vec()));
                c.plan = plan.collect();
            }
            Reply::Join(j) => {
                if j.error == ErrorCode::MemberIdRequired {
                    c.id = j.member_id.clone();
                } else if j.error != ErrorCode::RebalanceInProgress {
                    c.id.clear();
                }
                c.phase = Phase2::Idle;
            }
            Reply::Sync(s) if s.error == ErrorCode::None => {
                c.assignment = s.assignment.clone();
                c.phase = Phase2::Stable;
            }
            Reply::Sync(s) => {
                if s.error != ErrorCode::RebalanceInProgress {
                    c.id.clear();
                }
                c.phase = Phase2::Idle;
            }
        }
    }
}
