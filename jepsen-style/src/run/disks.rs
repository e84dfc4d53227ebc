//! Power loss for real processes: each broker's data lives on its own ext4 filesystem, a loop mount of an
//! image file. SIGKILL keeps whatever the broker wrote but did not sync (the kernel still holds it), so a
//! power loss kills the broker, then copies the image before the kernel writes those pages back: the copy
//! is the disk as it was when the power went. The filesystem is unmounted (writing the rest back to the
//! old image, which is dropped) and the copy mounted in its place.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use super::RunError;

/// Sparse: only written blocks take space.
const IMAGE_BYTES: &str = "4G";

pub struct Disks {
    /// (image, mount point) of each broker; removed on drop.
    disks: Vec<(PathBuf, PathBuf)>,
    /// Power losses run one at a time: they rename images.
    lock: Mutex<()>,
}

impl Disks {
    /// Why power losses cannot run here, if they cannot: they need root, losetup, mkfs.ext4 and mount.
    pub fn unavailable() -> Option<String> {
        if !super::network::is_root() {
            return Some("loop mounts need root (this process's uid is not 0)".into());
        }
        for tool in ["losetup", "mkfs.ext4", "mount", "umount"] {
            if !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
            {
                return Some(format!("{tool} is not installed"));
            }
        }
        None
    }

    /// Makes and mounts one filesystem per broker under `dir`.
    pub fn create(dir: &Path, brokers: usize) -> Result<Disks, RunError> {
        let mut disks = Disks { disks: Vec::new(), lock: Mutex::new(()) };
        for i in 0..brokers {
            let image = dir.join(format!("disk-{}.img", i + 1));
            let mount = dir.join(format!("disk-{}", i + 1));
            std::fs::create_dir_all(&mount)
                .map_err(|e| RunError::io(format!("cannot create {}", mount.display()), e))?;
            run("truncate", &["-s", IMAGE_BYTES, path(&image)?])?;
            run("mkfs.ext4", &["-q", "-F", path(&image)?])?;
            run("mount", &["-o", "loop", path(&image)?, path(&mount)?])?;
            disks.disks.push((image, mount));
        }
        Ok(disks)
    }

    /// Where broker `i` (0-based) keeps its data: a directory on its filesystem.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.disks[i].1.join("data")
    }

    /// Broker `i`'s disk loses what was not synced. The broker must be dead.
    pub fn lose_power(&self, i: usize) -> Result<(), RunError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (image, mount) = &self.disks[i];
        let snapshot = image.with_extension("img.power-loss");
        run("cp", &["--sparse=always", path(image)?, path(&snapshot)?])?;
        run("umount", &[path(mount)?])?;
        std::fs::rename(&snapshot, image)
            .map_err(|e| RunError::io(format!("cannot replace {} after a power loss", image.display()), e))?;
        // The copy was taken mid-flight: the journal replays at mount, as after a real power loss.
        run("mount", &["-o", "loop", path(image)?, path(mount)?])
    }
}

impl Drop for Disks {
    /// Unmounting a loop mount detaches its loop device; the images stay with the run's results.
    fn drop(&mut self) {
        for (_, mount) in self.disks.drain(..) {
            if let Err(e) = path(&mount).and_then(|m| run("umount", &[m])) {
                eprintln!("keel-jepsen: cleanup: {e}");
            }
        }
    }
}

fn path(p: &Path) -> Result<&str, RunError> {
    p.to_str().ok_or_else(|| RunError::Harness(format!("{} is not UTF-8", p.display())))
}

/// Runs `program args...`; a failure carries its stderr.
fn run(program: &str, args: &[&str]) -> Result<(), RunError> {
    let out =
        Command::new(program).args(args).output().map_err(|e| RunError::io(format!("cannot run {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RunError::Harness(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
