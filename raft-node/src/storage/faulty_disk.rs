//! A deterministic in-memory disk that loses unsynced writes on a crash, may
//! tear the last surviving write at a sector boundary, and may corrupt reads.
//!
//! All randomness comes from one `ChaCha8Rng` seeded by the caller, so a
//! failing run replays from its seed. Clones share the disk, so a test can
//! crash it under a live log and reopen.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::disk::{grow_error, Disk, DiskFile};

/// Torn writes keep a prefix that ends on a multiple of this file offset.
pub const SECTOR: u64 = 512;

/// See the module docs. File creation and removal are durable immediately
/// (the real disk syncs the directory for both).
#[derive(Clone)]
pub struct FaultyDisk {
    state: Arc<Mutex<State>>,
}

struct State {
    files: BTreeMap<String, FileState>,
    rng: ChaCha8Rng,
    read_flip_probability: f64,
    torn_writes: bool,
    /// Mutating operations left before the power fails, if armed.
    power_fails_in: Option<u64>,
    /// The power failed: every operation errors until `crash` restarts the disk.
    down: bool,
    /// Source of `FileState::id`; a handle whose id no longer matches is stale
    /// (its file was removed, or the disk crashed since it was opened).
    next_id: u64,
}

struct FileState {
    id: u64,
    /// The contents as of the last sync.
    durable: Vec<u8>,
    /// Operations since the last sync, in order.
    unsynced: Vec<Op>,
    /// `durable` with `unsynced` applied: what reads see.
    current: Vec<u8>,
}

enum Op {
    Append(Vec<u8>),
    Truncate(usize),
}

impl FaultyDisk {
    /// An empty disk; torn writes on, read corruption off.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                files: BTreeMap::new(),
                rng: ChaCha8Rng::seed_from_u64(seed),
                read_flip_probability: 0.0,
                torn_writes: true,
                power_fails_in: None,
                down: false,
                next_id: 0,
            })),
        }
    }

    /// Each later read flips one random bit of its buffer with probability `p`.
    pub fn set_read_corruption(&self, p: f64) {
        assert!((0.0..=1.0).contains(&p), "probability {p} out of range");
        self.lock().read_flip_probability = p;
    }

    /// Whether a crash may tear the last surviving append of a file.
    pub fn set_torn_writes(&self, on: bool) {
        self.lock().torn_writes = on;
    }

    /// Arms a power failure: after `ops` more successful mutating operations
    /// (create, remove, append, truncate, sync), the next one fails, the disk
    /// crashes as in [`FaultyDisk::crash`] and every operation errors until
    /// `crash` is called. `None` disarms. This puts crashes *inside* a
    /// multi-step operation of the code under test.
    ///
    /// While down, every operation through any handle (`len` included) fails
    /// with the power failure, as a dead machine answers nothing, not even
    /// from its page cache; after the restart, handles from before it stay
    /// stale (`NotFound`), as no process keeps its descriptors across a reboot.
    pub fn set_power_failure(&self, ops: Option<u64>) {
        self.lock().power_fails_in = ops;
    }

    /// Whether an armed power failure has happened.
    pub fn is_down(&self) -> bool {
        self.lock().down
    }

    /// Simulates power loss and restart: each file keeps its durable contents
    /// plus a random prefix of its unsynced operations (nothing after a gap),
    /// the last surviving append possibly torn at a sector boundary. Every open
    /// handle becomes stale and errors. After an armed power failure this only
    /// restarts the disk: it already crashed.
    pub fn crash(&self) {
        let mut state = self.lock();
        if state.down {
            state.down = false;
        } else {
            state.crash();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent state: every
        // mutation below completes before it could panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn crash(&mut self) {
        for file in self.files.values_mut() {
            let keep = self.rng.gen_range(0..=file.unsynced.len());
            let mut contents = std::mem::take(&mut file.durable);
            for (i, op) in file.unsynced.drain(..).take(keep).enumerate() {
                match op {
                    Op::Truncate(len) => contents.truncate(len),
                    Op::Append(data) => {
                        let start = contents.len() as u64;
                        let end = start + data.len() as u64;
                        let first_cut = start.div_ceil(SECTOR) * SECTOR;
                        let last = i + 1 == keep;
                        let kept = if last && self.torn_writes && first_cut < end && self.rng.gen_bool(0.5) {
                            let cuts = (end - 1 - first_cut) / SECTOR + 1;
                            let cut = first_cut + self.rng.gen_range(0..cuts) * SECTOR;
                            (cut - start) as usize
                        } else {
                            data.len()
                        };
                        contents.extend_from_slice(&data[..kept]);
                    }
                }
            }
            file.current.clone_from(&contents);
            file.durable = contents;
            file.id = self.next_id;
            self.next_id += 1;
        }
    }

    /// Fails if the power is off, or fails it now if it is due; call before
    /// every operation, with `mutating` for those that count towards it.
    fn power(&mut self, mutating: bool) -> io::Result<()> {
        if !self.down && mutating {
            match self.power_fails_in {
                Some(0) => {
                    self.power_fails_in = None;
                    self.crash();
                    self.down = true;
                }
                Some(n) => self.power_fails_in = Some(n - 1),
                None => {}
            }
        }
        if self.down {
            return Err(power_failure());
        }
        Ok(())
    }
}

impl Disk for FaultyDisk {
    fn open(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        let mut state = self.lock();
        let exists = state.files.contains_key(name);
        state.power(!exists)?;
        let id = match state.files.get(name) {
            Some(file) => file.id,
            None => {
                let id = state.next_id;
                state.next_id += 1;
                let file = FileState { id, durable: Vec::new(), unsynced: Vec::new(), current: Vec::new() };
                state.files.insert(name.to_owned(), file);
                id
            }
        };
        Ok(Box::new(FaultyFile { disk: self.clone(), name: name.to_owned(), id }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        let mut state = self.lock();
        state.power(true)?;
        match state.files.remove(name) {
            Some(_) => Ok(()),
            None => Err(not_found(name)),
        }
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut state = self.lock();
        state.power(false)?;
        Ok(state.files.keys().cloned().collect())
    }
}

fn power_failure() -> io::Error {
    io::Error::other("power failure")
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{name}: no such file (removed, or the handle predates a crash)"))
}

struct FaultyFile {
    disk: FaultyDisk,
    name: String,
    id: u64,
}

impl FaultyFile {
    fn with_file<T>(&self, mutating: bool, f: impl FnOnce(&mut FileState, &mut State) -> T) -> io::Result<T> {
        let mut guard = self.disk.lock();
        let state = &mut *guard;
        // A disk without power answers nothing else, whatever the handle.
        if state.down {
            return Err(power_failure());
        }
        if state.files.get(&self.name).is_none_or(|file| file.id != self.id) {
            return Err(not_found(&self.name));
        }
        state.power(mutating)?;
        // The power check may crash the disk, which makes this handle stale.
        let mut file = match state.files.remove(&self.name) {
            Some(file) if file.id == self.id => file,
            Some(other) => {
                state.files.insert(self.name.clone(), other);
                return Err(not_found(&self.name));
            }
            None => return Err(not_found(&self.name)),
        };
        let out = f(&mut file, state);
        state.files.insert(self.name.clone(), file);
        Ok(out)
    }
}

impl DiskFile for FaultyFile {
    fn append(&mut self, data: &[u8]) -> io::Result<u64> {
        self.with_file(true, |file, _| {
            let offset = file.current.len() as u64;
            file.current.extend_from_slice(data);
            file.unsynced.push(Op::Append(data.to_vec()));
            offset
        })
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.with_file(false, |file, state| {
            let start = usize::try_from(offset).ok()?;
            let end = start.checked_add(buf.len())?;
            buf.copy_from_slice(file.current.get(start..end)?);
            let p = state.read_flip_probability;
            if !buf.is_empty() && p > 0.0 && state.rng.gen_bool(p) {
                let bit = state.rng.gen_range(0..buf.len() * 8);
                buf[bit / 8] ^= 1 << (bit % 8);
            }
            Some(())
        })?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file"))
    }

    fn sync(&mut self) -> io::Result<()> {
        self.with_file(true, |file, _| {
            file.unsynced.clear();
            file.durable.clone_from(&file.current);
        })
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.with_file(true, |file, _| {
            let current = file.current.len() as u64;
            if len > current {
                return Err(grow_error(len, current));
            }
            file.current.truncate(len as usize);
            file.unsynced.push(Op::Truncate(len as usize));
            Ok(())
        })?
    }

    fn len(&self) -> io::Result<u64> {
        self.with_file(false, |file, _| file.current.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(disk: &FaultyDisk, name: &str) -> Vec<u8> {
        let file = disk.open(name).unwrap();
        let mut buf = vec![0; file.len().unwrap() as usize];
        file.read_at(0, &mut buf).unwrap();
        buf
    }

    #[test]
    fn synced_data_survives_and_unsynced_survives_only_as_a_prefix() {
        for seed in 0..500 {
            let disk = FaultyDisk::new(seed);
            let mut f = disk.open("f").unwrap();
            f.append(&[1; 700]).unwrap();
            f.sync().unwrap();
            f.append(&[2; 600]).unwrap();
            f.truncate(1000).unwrap();
            f.append(&[3; 300]).unwrap();
            disk.crash();
            assert!(f.append(b"x").is_err(), "stale handle must fail");
            let got = contents(&disk, "f");
            let ones = vec![1; 700];
            let allowed = [
                ones.clone(),
                [ones.clone(), vec![2; 600]].concat(),
                [ones.clone(), vec![2; 324]].concat(), // first append torn at 1024
                [ones.clone(), vec![2; 300]].concat(),
                [ones.clone(), vec![2; 300], vec![3; 24]].concat(), // last append torn
                [ones.clone(), vec![2; 300], vec![3; 300]].concat(),
            ];
            assert!(allowed.contains(&got), "seed {seed}: {} bytes", got.len());
        }
    }

    #[test]
    fn removal_is_durable_and_read_corruption_flips_one_bit() {
        let disk = FaultyDisk::new(7);
        let mut f = disk.open("f").unwrap();
        f.append(&[0; 64]).unwrap();
        f.sync().unwrap();
        disk.open("g").unwrap();
        disk.remove("g").unwrap();
        disk.crash();
        assert_eq!(disk.list().unwrap(), vec!["f"]);
        let f = disk.open("f").unwrap();
        disk.set_read_corruption(1.0);
        let mut buf = [0u8; 64];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(buf.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        let mut short = [0u8; 65];
        assert_eq!(f.read_at(0, &mut short).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn power_failure_crashes_at_the_armed_operation_until_restarted() {
        let disk = FaultyDisk::new(3);
        let mut f = disk.open("f").unwrap();
        f.append(b"durable").unwrap();
        f.sync().unwrap();
        disk.set_power_failure(Some(1));
        f.append(b" lost?").unwrap();
        assert_eq!(f.sync().unwrap_err().kind(), io::ErrorKind::Other);
        assert!(disk.is_down());
        assert!(disk.list().is_err() && disk.remove("f").is_err() && disk.open("g").is_err());
        // The handle answers nothing either, its length included: a made-up
        // length reads as a torn record, not as the power failure it is.
        let mut buf = [0; 7];
        for err in [f.len().unwrap_err(), f.read_at(0, &mut buf).unwrap_err()] {
            assert_eq!(err.to_string(), power_failure().to_string());
        }
        disk.crash();
        assert!(!disk.is_down());
        let got = contents(&disk, "f");
        assert!(got == b"durable" || got == b"durable lost?", "{got:?}");
        // Handles from before the failure stay stale after the restart.
        assert_eq!(f.len().unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(f.read_at(0, &mut buf).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(f.append(b"x").unwrap_err().kind(), io::ErrorKind::NotFound);
    }
}
