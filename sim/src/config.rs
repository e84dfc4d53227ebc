//! A simulation run's configuration: the flags of `keel-sim run`, how they
//! are written into a trace's header, and how `replay` reads them back.

use std::fmt;
use std::time::Duration;

use crate::schedule::Schedule;

/// A kind of fault the nemesis can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Kill a broker (its disk drops unsynced writes, maybe tearing the last one) and restart it.
    Kill,
    /// Pause a broker's tasks, then resume them.
    Pause,
    /// Cut broker-to-broker links: majority/minority, an isolated broker, one-way.
    Partition,
    /// Drop broker-to-broker messages.
    Loss,
    /// Deliver broker-to-broker messages twice.
    Duplicate,
    /// Hold broker-to-broker messages back, so later ones overtake them.
    Delay,
    /// Flip bits in reads on one broker's disk (a minority of every partition).
    Corrupt,
    /// Fail a broker's disk in the middle of its operations, then restart it.
    Power,
    /// Run some brokers' ticks slower or faster than configured, as a skewed clock would.
    Skew,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Delay,
        FaultKind::Corrupt,
        FaultKind::Power,
        FaultKind::Skew,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Delay => "delay",
            FaultKind::Corrupt => "corrupt",
            FaultKind::Power => "power",
            FaultKind::Skew => "skew",
        }
    }

    fn parse(name: &str) -> Result<FaultKind, String> {
        FaultKind::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let names: Vec<_> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "unknown fault {name:?} (known: all, all,-KIND.., none, or a comma-separated list of {})",
                names.join(", ")
            )
        })
    }
}

/// Which faults a run may inject.
#[derive(Clone, Debug, PartialEq)]
pub enum Faults {
    /// Swarm testing: the seed draws which kinds are on, from all but the excluded
    /// ones (`all`, or `all,-corrupt,-power`).
    All {
        except: Vec<FaultKind>,
    },
    None,
    /// Exactly these kinds are on (the seed still draws their rates).
    List(Vec<FaultKind>),
    /// Exactly these episodes (`schedule:` and the schedule's one-line form).
    Scheduled(Schedule),
}

impl Faults {
    pub fn parse(text: &str) -> Result<Faults, String> {
        if let Some(schedule) = text.strip_prefix("schedule:") {
            return Schedule::parse(schedule).map(Faults::Scheduled);
        }
        match text {
            "none" => Ok(Faults::None),
            list => {
                let mut names = list.split(',').map(str::trim);
                if list.starts_with("all") {
                    names.next();
                    let except = names
                        .map(|n| {
                            n.strip_prefix('-')
                                .ok_or_else(|| format!("after all, only exclusions like -corrupt (found {n:?})"))
                                .and_then(FaultKind::parse)
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    return Ok(Faults::All { except: sorted(except) });
                }
                Ok(Faults::List(sorted(names.map(FaultKind::parse).collect::<Result<Vec<_>, _>>()?)))
            }
        }
    }

    /// The kinds a swarm may draw from, or that are on.
    pub fn kinds(&self) -> Vec<FaultKind> {
        match self {
            Faults::All { except } => FaultKind::ALL.into_iter().filter(|k| !except.contains(k)).collect(),
            Faults::None => Vec::new(),
            Faults::List(kinds) => kinds.clone(),
            Faults::Scheduled(schedule) => schedule.kinds(),
        }
    }
}

fn sorted(mut kinds: Vec<FaultKind>) -> Vec<FaultKind> {
    kinds.sort();
    kinds.dedup();
    kinds
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Faults::All { except } => {
                f.write_str("all")?;
                except.iter().try_for_each(|k| write!(f, ",-{}", k.name()))
            }
            Faults::None => f.write_str("none"),
            Faults::List(kinds) => {
                let names: Vec<_> = kinds.iter().map(|k| k.name()).collect();
                f.write_str(&names.join(","))
            }
            Faults::Scheduled(schedule) => write!(f, "schedule:{schedule}"),
        }
    }
}

/// Everything that decides a run, besides the build.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    pub seed: u64,
    pub brokers: u8,
    pub partitions: u16,
    /// How long the workload and the nemesis run, before the heal phase.
    pub duration: Duration,
    pub faults: Faults,
    /// Partition replicas are moved (decommission, rebalance) while the workload runs.
    pub moves: bool,
    /// A broker beyond `brokers` joins mid-run, takes replicas, and a founder
    /// leaves for good (`joiner`).
    pub join: bool,
    /// Every broker runs the automatic rebalance (`[moves] auto_rebalance`);
    /// with `join`, nothing else moves replicas onto the joiner.
    pub auto_rebalance: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            brokers: 5,
            partitions: 8,
            duration: Duration::from_secs(60),
            faults: Faults::All { except: Vec::new() },
            moves: false,
            join: false,
            auto_rebalance: false,
        }
    }

    /// The flags that reproduce this config, after `--seed N`.
    pub fn flags(&self) -> String {
        self.flags_with(&self.faults.to_string())
    }

    fn flags_with(&self, faults: &str) -> String {
        // `--moves` only when on: the configs of traces recorded before it read the same.
        let moves = if self.moves { " --moves 1" } else { "" };
        let join = if self.join { " --join 1" } else { "" };
        let auto = if self.auto_rebalance { " --auto-rebalance 1" } else { "" };
        format!(
            "--brokers {} --partitions {} --duration {} --faults {faults}{moves}{join}{auto}",
            self.brokers,
            self.partitions,
            format_duration(self.duration),
        )
    }

    /// The `keel-sim run` command line that reproduces this config, quoted for a shell.
    pub fn command(&self) -> String {
        let faults = match &self.faults {
            Faults::Scheduled(_) => format!("'{}'", self.faults),
            _ => self.faults.to_string(),
        };
        format!("keel-sim run --seed {} {}", self.seed, self.flags_with(&faults))
    }

    /// Applies one flag and its value; `Ok(false)` if the flag is not a config flag.
    pub fn set(&mut self, flag: &str, value: &str) -> Result<bool, String> {
        match flag {
            "--seed" => self.seed = value.parse().map_err(|e| format!("--seed {value}: {e}"))?,
            "--brokers" => {
                let brokers: u8 = value.parse().map_err(|e| format!("--brokers {value}: {e}"))?;
                if !(3..=7).contains(&brokers) {
                    return Err(format!("--brokers {brokers}: between 3 and 7"));
                }
                self.brokers = brokers;
            }
            "--partitions" => {
                let partitions: u16 = value.parse().map_err(|e| format!("--partitions {value}: {e}"))?;
                if !(1..=256).contains(&partitions) {
                    return Err(format!("--partitions {partitions}: between 1 and 256"));
                }
                self.partitions = partitions;
            }
            "--duration" => self.duration = parse_duration(value)?,
            "--faults" => self.faults = Faults::parse(value)?,
            "--moves" => {
                self.moves = match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(format!("--moves {value}: 1 (move replicas while the workload runs) or 0")),
                }
            }
            "--join" => {
                self.join = match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(format!("--join {value}: 1 (a broker joins, a founder leaves) or 0")),
                }
            }
            "--auto-rebalance" => {
                self.auto_rebalance = match value {
                    "1" => true,
                    "0" => false,
                    _ => return Err(format!("--auto-rebalance {value}: 1 (brokers spread replicas themselves) or 0")),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks what single flags cannot: a schedule names only brokers the cluster has.
    pub fn check(&self) -> Result<(), String> {
        if self.join && self.moves {
            return Err("--join 1 and --moves 1 both move replicas: pick one".into());
        }
        match &self.faults {
            Faults::Scheduled(schedule) => schedule.check(self.brokers),
            _ => Ok(()),
        }
    }
}

/// `60s`, `2m`, `500ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?} (e.g. 60s, 2m, 500ms)");
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(bad());
    }
    Ok(duration)
}

pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// The build that ran a simulation: the crate version and the git commit.
pub fn build() -> String {
    let commit = option_env!("KEEL_GIT_COMMIT").unwrap_or("unknown");
    format!("keel-sim {} (git {commit})", env!("CARGO_PKG_VERSION"))
}

/// The first line of every trace.
pub const MAGIC: &str = "# keel-sim trace";

/// The trace header: what `replay` needs to run the same simulation again.
pub fn header(config: &SimConfig) -> String {
    format!("{MAGIC}\nseed: {}\nconfig: {}\nbuild: {}\n", config.seed, config.flags(), build())
}

/// Reads the config and the build back from a trace's header.
pub fn parse_header(trace: &str) -> Result<(SimConfig, String), String> {
    let mut lines = trace.lines();
    if lines.next() != Some(MAGIC) {
        return Err(format!("not a keel-sim trace (the first line is not {MAGIC:?})"));
    }
    let mut field = |name: &str| {
        let line = lines.next().unwrap_or_default();
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(": "))
            .map(str::to_owned)
            .ok_or_else(|| format!("the trace header has no {name:?} line where expected (found {line:?})"))
    };
    let seed = field("seed")?;
    let flags = field("config")?;
    let build = field("build")?;
    let mut config = SimConfig::new(seed.parse().map_err(|e| format!("seed {seed:?}: {e}"))?);
    let words: Vec<&str> = flags.split_whitespace().collect();
    for pair in words.chunks(2) {
        match pair {
            [flag, value] if config.set(flag, value)? => {}
            _ => return Err(format!("unexpected config {pair:?} in the trace header")),
        }
    }
    config.check()?;
    Ok((config, build))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_as_its_config() {
        let mut config = SimConfig::new(42);
        config.set("--faults", "kill,partition").unwrap();
        config.set("--duration", "90s").unwrap();
        config.set("--brokers", "3").unwrap();
        let text = format!("{}   0.000 INFO something\n", header(&config));
        assert!(!text.contains("--moves"), "absent when off, as in traces recorded before it");
        let (back, build) = parse_header(&text).unwrap();
        assert_eq!(back, config);
        assert_eq!(build, super::build());
        config.set("--moves", "1").unwrap();
        let (back, _) = parse_header(&header(&config)).unwrap();
        assert!(back.moves);
        assert!(config.set("--moves", "yes").is_err());
        assert!(!text.contains("--join"), "absent when off");
        config.set("--join", "1").unwrap();
        assert!(config.check().is_err(), "--join and --moves both move replicas");
        config.set("--moves", "0").unwrap();
        let (back, _) = parse_header(&header(&config)).unwrap();
        assert!(back.join && !back.moves);
        assert!(!header(&config).contains("--auto-rebalance"), "absent when off");
        config.set("--auto-rebalance", "1").unwrap();
        let (back, _) = parse_header(&header(&config)).unwrap();
        assert!(back.join && back.auto_rebalance);
    }

    #[test]
    fn flags_are_checked() {
        let mut config = SimConfig::new(1);
        assert!(config.set("--brokers", "8").is_err());
        assert!(config.set("--faults", "kill,meteor").is_err());
        assert!(config.set("--duration", "5h").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(Faults::parse("partition,kill").unwrap().to_string(), "kill,partition");
        let swarm = Faults::parse("all,-power,-corrupt").unwrap();
        assert_eq!(swarm.to_string(), "all,-corrupt,-power");
        assert_eq!(Faults::parse(&swarm.to_string()).unwrap(), swarm);
        assert!(!swarm.kinds().contains(&FaultKind::Corrupt));
        assert_eq!(Faults::parse("all").unwrap().kinds().len(), FaultKind::ALL.len());
        assert!(Faults::parse("all,kill").is_err());
        let scheduled = Faults::parse("schedule:0+500=kill(3);100+900=noise(loss=0.2,dup=0,delay=0.1<50)").unwrap();
        assert_eq!(Faults::parse(&scheduled.to_string()).unwrap(), scheduled);
        assert_eq!(scheduled.kinds(), [FaultKind::Kill, FaultKind::Loss, FaultKind::Delay]);
        let mut config = SimConfig { faults: scheduled, ..SimConfig::new(1) };
        assert!(config.check().is_ok());
        config.set("--brokers", "3").unwrap();
        assert!(config.check().is_ok());
        assert!(Faults::parse("schedule:0+1=kill(4)")
            .is_ok_and(|faults| { SimConfig { faults, brokers: 3, ..SimConfig::new(1) }.check().is_err() }));
    }
}
