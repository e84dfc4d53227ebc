//! A fault schedule: the exact episodes a run injects, instead of the ones its
//! seed would draw. Written as one line without spaces (so it fits the trace
//! header's `--faults schedule:...` and replays from it), decoded from a
//! fuzzer's bytes ([`Schedule::decode`]) or drawn from the seed by the nemesis.
//!
//! Episodes run in two lanes, as the seeded nemesis does: process faults
//! (kill, pause, partition, corrupt reads, power failure) one after another, and
//! link noise one after another, the two lanes at the same time. An episode
//! waits `gap` after the previous one of its lane ends, then holds its fault
//! for `hold`. Episodes that would start after the run's fault phase are not run;
//! one that would outlast it is cut short.

use std::fmt::{self, Write as _};
use std::time::Duration;

use arbitrary::Unstructured;

use crate::config::FaultKind;

/// Per-message link fault probabilities; all zero when quiet.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Noise {
    pub loss: f64,
    pub duplicate: f64,
    pub delay: f64,
    pub delay_max_ms: u64,
}

/// Which broker-to-broker links a partition cuts. Broker lists keep their
/// order: it is part of what the trace says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Both ways between the two sides.
    Split { majority: Vec<u8>, minority: Vec<u8> },
    /// Both ways between one broker and the rest.
    Isolate(u8),
    /// `from` cannot send to `to`; the other way works.
    OneWay { from: Vec<u8>, to: Vec<u8> },
    /// Nobody can send to this broker; it can send.
    Deaf(u8),
    /// `left` and `right` cut both ways, each still linked to `bridge`.
    Bridge { left: Vec<u8>, right: Vec<u8>, bridge: u8 },
    /// Exactly these directed links (from, to).
    Links(Vec<(u8, u8)>),
}

/// One fault, with its targets.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Kill these brokers (their disks drop unsynced writes); restart them at the end.
    Kill(Vec<u8>),
    /// Pause these brokers; resume them at the end.
    Pause(Vec<u8>),
    Partition(Cut),
    /// The broker's reads flip bits with probability `rate`; with `restart`, it is
    /// killed and restarted halfway through, recovering on its corrupting disk.
    Corrupt {
        broker: u8,
        rate: f64,
        restart: bool,
    },
    /// The broker's disk fails after `writes` more writes; if it did by the end,
    /// the broker restarts on what the disk kept.
    Power {
        broker: u8,
        writes: u64,
    },
    /// These brokers tick at `percent` of their configured rate (below 100:
    /// late heartbeats and elections; above: early ones); back to 100 at the end.
    Skew {
        brokers: Vec<u8>,
        percent: u32,
    },
    /// Link noise on every broker-to-broker message.
    Noise(Noise),
}

impl Fault {
    /// Link noise runs in its own lane, beside the process faults.
    pub fn is_noise(&self) -> bool {
        matches!(self, Fault::Noise(_))
    }

    fn kinds(&self) -> Vec<FaultKind> {
        match self {
            Fault::Kill(_) => vec![FaultKind::Kill],
            Fault::Pause(_) => vec![FaultKind::Pause],
            Fault::Partition(_) => vec![FaultKind::Partition],
            Fault::Corrupt { .. } => vec![FaultKind::Corrupt],
            Fault::Power { .. } => vec![FaultKind::Power],
            Fault::Skew { .. } => vec![FaultKind::Skew],
            Fault::Noise(noise) => {
                let rates = [
                    (FaultKind::Loss, noise.loss),
                    (FaultKind::Duplicate, noise.duplicate),
                    (FaultKind::Delay, noise.delay),
                ];
                rates.into_iter().filter(|(_, p)| *p > 0.0).map(|(kind, _)| kind).collect()
            }
        }
    }

    /// The brokers the fault names.
    fn brokers(&self) -> Vec<u8> {
        match self {
            Fault::Kill(brokers) | Fault::Pause(brokers) | Fault::Skew { brokers, .. } => brokers.clone(),
            Fault::Partition(Cut::Split { majority, minority }) => [majority.as_slice(), minority].concat(),
            Fault::Partition(Cut::OneWay { from, to }) => [from.as_slice(), to].concat(),
            Fault::Partition(Cut::Bridge { left, right, bridge }) => [left.as_slice(), right, &[*bridge]].concat(),
            Fault::Partition(Cut::Isolate(b) | Cut::Deaf(b)) => vec![*b],
            Fault::Partition(Cut::Links(links)) => links.iter().flat_map(|&(a, b)| [a, b]).collect(),
            Fault::Corrupt { broker, .. } | Fault::Power { broker, .. } => vec![*broker],
            Fault::Noise(_) => Vec::new(),
        }
    }
}

/// After `gap` of quiet in its lane, `fault` for `hold`.
#[derive(Clone, Debug, PartialEq)]
pub struct Episode {
    pub gap: Duration,
    pub hold: Duration,
    pub fault: Fault,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    pub episodes: Vec<Episode>,
}

/// The fuzzer's ranges: episodes short enough that several fit a 10-20 s run.
const MAX_EPISODES: usize = 10;
const MAX_GAP_MS: u64 = 4_000;
const HOLD_MS: (u64, u64) = (100, 8_000);
/// How slow or fast a skewed broker ticks, in percent of its rate.
pub const SKEW_PERCENT: (u32, u32) = (20, 400);

impl Schedule {
    /// The episodes of one lane (noise or process), in order.
    pub fn lane(&self, noise: bool) -> Vec<Episode> {
        self.episodes.iter().filter(|e| e.fault.is_noise() == noise).cloned().collect()
    }

    /// The kinds of fault the schedule injects, sorted.
    pub fn kinds(&self) -> Vec<FaultKind> {
        let mut kinds: Vec<FaultKind> = self.episodes.iter().flat_map(|e| e.fault.kinds()).collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// Every broker named is one of `1..=brokers`.
    pub fn check(&self, brokers: u8) -> Result<(), String> {
        for episode in &self.episodes {
            if let Some(b) = episode.fault.brokers().into_iter().find(|b| !(1..=brokers).contains(b)) {
                return Err(format!("the schedule names broker {b}; the cluster has brokers 1..={brokers}"));
            }
        }
        Ok(())
    }

    /// A schedule for a cluster of `brokers`, from a fuzzer's bytes, of every
    /// kind of fault; short inputs give short schedules.
    pub fn decode(u: &mut Unstructured<'_>, brokers: u8) -> arbitrary::Result<Schedule> {
        let ids: Vec<u8> = (1..=brokers).collect();
        let count = u.int_in_range(0..=MAX_EPISODES)?;
        let mut episodes = Vec::with_capacity(count);
        for _ in 0..count {
            let gap = Duration::from_millis(u.int_in_range(0..=MAX_GAP_MS)?);
            let hold = Duration::from_millis(u.int_in_range(HOLD_MS.0..=HOLD_MS.1)?);
            let fault = match u.int_in_range(0..=6u8)? {
                0 => Fault::Kill(some(u, &ids)?),
                1 => Fault::Pause(some(u, &ids)?),
                2 => Fault::Partition(decode_cut(u, &ids)?),
                3 => Fault::Power { broker: *u.choose(&ids)?, writes: u.int_in_range(0..=400)? },
                4 => {
                    Fault::Corrupt { broker: *u.choose(&ids)?, rate: 0.001 + rate(u, 0.049)?, restart: u.arbitrary()? }
                }
                5 => Fault::Skew { brokers: some(u, &ids)?, percent: u.int_in_range(SKEW_PERCENT.0..=SKEW_PERCENT.1)? },
                _ => Fault::Noise(Noise {
                    loss: rate(u, 0.3)?,
                    duplicate: rate(u, 0.2)?,
                    delay: rate(u, 0.4)?,
                    delay_max_ms: u.int_in_range(2..=1_000)?,
                }),
            };
            episodes.push(Episode { gap, hold, fault });
        }
        Ok(Schedule { episodes })
    }

    /// One line per episode with its nominal start in its lane, for a human.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for noise in [false, true] {
            let mut at = Duration::ZERO;
            for episode in self.lane(noise) {
                at += episode.gap;
                let _ = writeln!(
                    text,
                    "  {:>8.3}s for {:>6.3}s  {}",
                    at.as_secs_f64(),
                    episode.hold.as_secs_f64(),
                    FaultText(&episode.fault)
                );
                at += episode.hold;
            }
        }
        text
    }

    /// Reads the one-line form written by `Display`.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let episodes = text.split(';').filter(|e| !e.is_empty()).map(parse_episode).collect::<Result<_, _>>()?;
        Ok(Schedule { episodes })
    }
}

/// 1 to all of `ids`, distinct, in the order drawn.
fn some(u: &mut Unstructured<'_>, ids: &[u8]) -> arbitrary::Result<Vec<u8>> {
    let k = u.int_in_range(1..=ids.len())?;
    order(u, ids).map(|mut order| {
        order.truncate(k);
        order
    })
}

/// `ids` in an order the bytes choose.
fn order(u: &mut Unstructured<'_>, ids: &[u8]) -> arbitrary::Result<Vec<u8>> {
    let mut pool = ids.to_vec();
    let mut order = Vec::with_capacity(ids.len());
    while !pool.is_empty() {
        let i = u.choose_index(pool.len())?;
        order.push(pool.swap_remove(i));
    }
    Ok(order)
}

fn rate(u: &mut Unstructured<'_>, max: f64) -> arbitrary::Result<f64> {
    Ok(f64::from(u.arbitrary::<u8>()?) / 255.0 * max)
}

fn decode_cut(u: &mut Unstructured<'_>, ids: &[u8]) -> arbitrary::Result<Cut> {
    let order = order(u, ids)?;
    let n = order.len();
    Ok(match u.int_in_range(0..=5u8)? {
        0 => {
            let (minority, majority) = order.split_at(u.int_in_range(1..=(n - 1) / 2)?);
            Cut::Split { majority: majority.to_vec(), minority: minority.to_vec() }
        }
        1 => Cut::Isolate(order[0]),
        2 => {
            let (from, to) = order.split_at(u.int_in_range(1..=n - 1)?);
            Cut::OneWay { from: from.to_vec(), to: to.to_vec() }
        }
        3 => Cut::Deaf(order[0]),
        4 => {
            let (left, right) = order[1..].split_at((n - 1) / 2);
            Cut::Bridge { left: left.to_vec(), right: right.to_vec(), bridge: order[0] }
        }
        _ => {
            let mut links = Vec::new();
            for &a in ids {
                for &b in ids {
                    if a != b && u.arbitrary::<bool>()? {
                        links.push((a, b));
                    }
                }
            }
            Cut::Links(links)
        }
    })
}

/// The one-line form: `GAP+HOLD=FAULT` per episode (milliseconds), joined by `;`.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.episodes.iter().enumerate() {
            let separator = if i == 0 { "" } else { ";" };
            write!(f, "{separator}{}+{}={}", e.gap.as_millis(), e.hold.as_millis(), FaultText(&e.fault))?;
        }
        Ok(())
    }
}

struct FaultText<'a>(&'a Fault);

fn list(brokers: &[u8]) -> String {
    brokers.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
}

impl fmt::Display for FaultText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Fault::Kill(b) => write!(f, "kill({})", list(b)),
            Fault::Pause(b) => write!(f, "pause({})", list(b)),
            Fault::Partition(Cut::Split { majority, minority }) => {
                write!(f, "split({}|{})", list(majority), list(minority))
            }
            Fault::Partition(Cut::Isolate(b)) => write!(f, "isolate({b})"),
            Fault::Partition(Cut::OneWay { from, to }) => write!(f, "oneway({}>{})", list(from), list(to)),
            Fault::Partition(Cut::Deaf(b)) => write!(f, "deaf({b})"),
            Fault::Partition(Cut::Bridge { left, right, bridge }) => {
                write!(f, "bridge({}|{}@{bridge})", list(left), list(right))
            }
            Fault::Partition(Cut::Links(links)) => {
                let links: Vec<_> = links.iter().map(|(a, b)| format!("{a}>{b}")).collect();
                write!(f, "links({})", links.join(","))
            }
            Fault::Corrupt { broker, rate, restart } => {
                write!(f, "corrupt({broker}@{rate}{})", if *restart { ",restart" } else { "" })
            }
            Fault::Power { broker, writes } => write!(f, "power({broker}@{writes})"),
            Fault::Skew { brokers, percent } => write!(f, "skew({}@{percent})", list(brokers)),
            Fault::Noise(n) => {
                write!(f, "noise(loss={},dup={},delay={}<{})", n.loss, n.duplicate, n.delay, n.delay_max_ms)
            }
        }
    }
}

fn parse_episode(text: &str) -> Result<Episode, String> {
    let bad = |why: &str| format!("schedule episode {text:?}: {why} (expected GAP+HOLD=FAULT(ARGS), in ms)");
    let (times, fault) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
    let (gap, hold) = times.split_once('+').ok_or_else(|| bad("no '+'"))?;
    let ms = |t: &str| t.parse().map(Duration::from_millis).map_err(|_| bad("bad milliseconds"));
    let (name, args) = fault.strip_suffix(')').and_then(|f| f.split_once('(')).ok_or_else(|| bad("no (ARGS)"))?;
    let fault = parse_fault(name, args).map_err(|why| bad(&why))?;
    Ok(Episode { gap: ms(gap)?, hold: ms(hold)?, fault })
}

fn pair<'a>(text: &'a str, separator: char, form: &str) -> Result<(&'a str, &'a str), String> {
    text.split_once(separator).ok_or_else(|| format!("expected {form}, found {text:?}"))
}

fn parse_fault(name: &str, args: &str) -> Result<Fault, String> {
    let broker = |t: &str| t.parse::<u8>().map_err(|_| format!("bad broker {t:?}"));
    let brokers = |t: &str| t.split(',').map(broker).collect::<Result<Vec<u8>, String>>();
    let number = |t: &str| t.parse::<f64>().map_err(|_| format!("bad number {t:?}"));
    Ok(match name {
        "kill" => Fault::Kill(brokers(args)?),
        "pause" => Fault::Pause(brokers(args)?),
        "split" => {
            let (majority, minority) = pair(args, '|', "MAJORITY|MINORITY")?;
            Fault::Partition(Cut::Split { majority: brokers(majority)?, minority: brokers(minority)? })
        }
        "isolate" => Fault::Partition(Cut::Isolate(broker(args)?)),
        "oneway" => {
            let (from, to) = pair(args, '>', "FROM>TO")?;
            Fault::Partition(Cut::OneWay { from: brokers(from)?, to: brokers(to)? })
        }
        "deaf" => Fault::Partition(Cut::Deaf(broker(args)?)),
        "bridge" => {
            let (sides, bridge) = pair(args, '@', "LEFT|RIGHT@BRIDGE")?;
            let (left, right) = pair(sides, '|', "LEFT|RIGHT@BRIDGE")?;
            Fault::Partition(Cut::Bridge { left: brokers(left)?, right: brokers(right)?, bridge: broker(bridge)? })
        }
        "links" => {
            let link = |l: &str| pair(l, '>', "FROM>TO").and_then(|(a, b)| Ok((broker(a)?, broker(b)?)));
            let links = args.split(',').filter(|l| !l.is_empty()).map(link).collect::<Result<_, _>>()?;
            Fault::Partition(Cut::Links(links))
        }
        "corrupt" => {
            let (at, restart) = args.strip_suffix(",restart").map_or((args, false), |at| (at, true));
            let (b, rate) = pair(at, '@', "BROKER@RATE")?;
            Fault::Corrupt { broker: broker(b)?, rate: number(rate)?, restart }
        }
        "power" => {
            let (b, writes) = pair(args, '@', "BROKER@WRITES")?;
            Fault::Power { broker: broker(b)?, writes: writes.parse().map_err(|_| format!("bad count {writes:?}"))? }
        }
        "skew" => {
            let (b, percent) = pair(args, '@', "BROKERS@PERCENT")?;
            let percent = percent.parse().map_err(|_| format!("bad percent {percent:?}"))?;
            Fault::Skew { brokers: brokers(b)?, percent }
        }
        "noise" => {
            let mut noise = Noise::default();
            for field in args.split(',') {
                let (key, value) = pair(field, '=', "KEY=VALUE")?;
                match key {
                    "loss" => noise.loss = number(value)?,
                    "dup" => noise.duplicate = number(value)?,
                    "delay" => {
                        let (p, max) = pair(value, '<', "delay=P<MAXMS")?;
                        noise.delay = number(p)?;
                        noise.delay_max_ms = max.parse().map_err(|_| format!("bad milliseconds {max:?}"))?;
                    }
                    _ => return Err(format!("unknown noise field {key:?} (loss, dup, delay)")),
                }
            }
            Fault::Noise(noise)
        }
        _ => return Err(format!("unknown fault {name:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_schedules_read_back_from_their_text_and_name_only_real_brokers() {
        let mut episodes = 0;
        for seed in 0..200u32 {
            let mut rng = crate::rng::Rng::new(u64::from(seed), 1);
            let bytes: Vec<u8> = (0..256).map(|_| rng.next_u64() as u8).collect();
            let schedule = Schedule::decode(&mut Unstructured::new(&bytes), 3).unwrap();
            episodes += schedule.episodes.len();
            assert_eq!(Schedule::parse(&schedule.to_string()).unwrap(), schedule, "{schedule}");
            assert!(!schedule.to_string().contains(char::is_whitespace));
            schedule.check(3).unwrap();
        }
        assert!(episodes > 200, "the bytes decode to schedules with episodes ({episodes})");
    }

    #[test]
    fn every_fault_reads_back() {
        let text = "0+100=kill(1,3);5+200=pause(2);0+1=split(1,2|3);1+1=isolate(2);1+1=oneway(1>2,3);\
                    1+1=deaf(3);1+1=bridge(1|3@2);1+1=links(1>2,3>1);1+1=links();1+1=corrupt(2@0.0125,restart);\
                    1+1=corrupt(1@0.5);1+1=power(3@120);7+9=noise(loss=0.1,dup=0,delay=0.25<300)";
        let schedule = Schedule::parse(text).unwrap();
        assert_eq!(schedule.episodes.len(), 13);
        assert_eq!(schedule.to_string(), text);
        assert_eq!(schedule.lane(true).len(), 1);
        assert!(schedule.check(2).is_err(), "broker 3 is not in a cluster of 2");
        assert!(Schedule::parse("0+1=meteor(1)").is_err());
        assert!(Schedule::parse("0+1=kill(x)").is_err());
        assert!(Schedule::parse("0=kill(1)").is_err());
    }
}
