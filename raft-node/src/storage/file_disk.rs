//! `Disk` on real files in one directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::disk::{grow_error, Disk, DiskFile};

/// Files in one directory. File creation and removal are made durable by
/// syncing the directory, as a crash may otherwise forget the entry.
#[derive(Debug, Clone)]
pub struct FileDisk {
    dir: PathBuf,
}

impl FileDisk {
    /// Uses `dir`, creating it (and making its creation durable) if needed.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(Self { dir })
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        // Names are flat: a separator or dot-name would escape or alias the directory.
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad file name {name:?}")));
        }
        Ok(self.dir.join(name))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Disk for FileDisk {
    fn open(&self, name: &str) -> io::Result<Box<dyn DiskFile>> {
        let path = self.path(name)?;
        let mut options = OpenOptions::new();
        options.read(true).append(true);
        let file = match options.clone().create_new(true).open(&path) {
            Ok(file) => {
                sync_dir(&self.dir)?;
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(&path)?,
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        Ok(Box::new(RealFile { file, len }))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.path(name)?)?;
        sync_dir(&self.dir)
    }

    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

struct RealFile {
    file: File,
    /// Tracked here so `len` needs no syscall; the file is opened in append mode.
    len: u64,
}

impl DiskFile for RealFile {
    fn append(&mut self, data: &[u8]) -> io::Result<u64> {
        let offset = self.len;
        if let Err(e) = self.file.write_all(data) {
            // A partial write may have landed; learn the real length again.
            self.len = self.file.metadata()?.len();
            return Err(e);
        }
        self.len += data.len() as u64;
        Ok(offset)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if len > self.len {
            return Err(grow_error(len, self.len));
        }
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_list_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FileDisk::new(dir.path().join("sub")).unwrap();
        let mut b = disk.open("b").unwrap();
        assert_eq!(b.append(b"hello").unwrap(), 0);
        assert_eq!(b.append(b" world").unwrap(), 5);
        b.sync().unwrap();
        let mut buf = [0u8; 5];
        b.read_at(6, &mut buf).unwrap();
        assert_eq!(&buf, b"world");
        let err = b.read_at(8, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        b.truncate(5).unwrap();
        assert!(b.truncate(6).is_err());
        assert_eq!(b.append(b"!").unwrap(), 5);
        drop(b);
        disk.open("a").unwrap();
        assert_eq!(disk.list().unwrap(), vec!["a", "b"]);
        let b = disk.open("b").unwrap();
        assert_eq!(b.len().unwrap(), 6);
        disk.remove("a").unwrap();
        assert!(disk.remove("a").is_err());
        assert_eq!(disk.list().unwrap(), vec!["b"]);
        assert!(disk.open("../x").is_err());
    }
}
