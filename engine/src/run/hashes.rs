//! Content keys of the files nodes read (images, depth maps, weights), remembered between
//! calls in `<output>/file-hashes.json` by (path, size, modification time, inode), so a second
//! `mio run`, `--explain` or watch cycle over a folder of gigabytes reads no image at all.
//!
//! A file whose modification time is less than [`SETTLE`] old is hashed but not remembered: a
//! write within the clock's granularity could change it without changing its time (git's
//! "racy clean" problem). The record is a cache: a damaged, truncated or foreign file is
//! ignored (and rewritten), and two processes writing it at once leave one of their versions
//! whole (atomic replace).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How old a file's modification time must be before its hash is remembered.
const SETTLE: Duration = Duration::from_secs(2);

/// The record's layout; another one is ignored.
const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: u64,
    inode: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    path: String,
    stamp: Stamp,
    key: String,
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    files: Vec<Entry>,
}

/// The remembered keys, and those found in this process.
pub struct FileHashes {
    file: Option<PathBuf>,
    known: HashMap<PathBuf, (Stamp, String)>,
    /// Keys of this process, by path (a missing file maps to the key of its name alone).
    seen: HashMap<PathBuf, String>,
    changed: bool,
    /// Files hashed (read in full) by this process: for tests and `--explain`'s timing.
    pub read: usize,
}

fn stamp(meta: &std::fs::Metadata) -> Option<Stamp> {
    let mtime = meta.modified().ok()?;
    let mtime_ns = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_nanos() as u64;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        size: meta.len(),
        mtime_ns,
        inode,
    })
}

fn settled(s: &Stamp) -> bool {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    now.saturating_sub(s.mtime_ns) >= SETTLE.as_nanos() as u64
}

impl FileHashes {
    /// Keys remembered in `file` (none when it is missing or unreadable).
    pub fn open(file: &Path) -> FileHashes {
        let known = std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
            .filter(|r| r.version == VERSION)
            .map(|r| {
                r.files
                    .into_iter()
                    .map(|e| (PathBuf::from(e.path), (e.stamp, e.key)))
                    .collect()
            })
            .unwrap_or_default();
        FileHashes {
            file: Some(file.to_path_buf()),
            known,
            seen: HashMap::new(),
            changed: false,
            read: 0,
        }
    }

    /// Keys for this process only.
    pub fn in_memory() -> FileHashes {
        FileHashes {
            file: None,
            known: HashMap::new(),
            seen: HashMap::new(),
            changed: false,
            read: 0,
        }
    }

    /// The key of every file (its name and bytes), reading only those not remembered with
    /// their current size, time and inode; a missing or unreadable file keys as its name alone,
    /// so the node that reads it reports the error itself.
    pub fn keys(&mut self, files: &[PathBuf]) -> Vec<String> {
        let todo: Vec<&PathBuf> = files
            .iter()
            .filter(|f| !self.seen.contains_key(*f))
            .collect();
        let looked: Vec<(PathBuf, Option<Stamp>, Option<String>)> = todo
            .par_iter()
            .map(|f| {
                let s = std::fs::metadata(f).ok().and_then(|m| stamp(&m));
                let remembered = match (&s, self.known.get(*f)) {
                    (Some(s), Some((old, key))) if s == old => Some(key.clone()),
                    _ => None,
                };
                ((*f).clone(), s, remembered)
            })
            .collect();
        let hashed: Vec<(PathBuf, Option<Stamp>, String, bool)> = looked
            .into_par_iter()
            .map(|(f, s, remembered)| match remembered {
                Some(k) => (f, s, k, false),
                None => {
                    let key = mio_stdlib::data::file_key(&f).unwrap_or_else(|_| {
                        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                        mio_stdlib::data::content_key(&[name.unwrap_or_default().as_bytes()])
                    });
                    (f, s, key, true)
                }
            })
            .collect();
        for (f, s, key, fresh) in hashed {
            if fresh {
                self.read += 1;
                if let Some(s) = s.filter(settled) {
                    if f.to_str().is_some() {
                        self.known.insert(f.clone(), (s, key.clone()));
                        self.changed = true;
                    }
                }
            }
            self.seen.insert(f, key);
        }
        files.iter().map(|f| self.seen[f].clone()).collect()
    }

    /// Remembers what this process hashed (atomically; a failure to write only costs the next
    /// call the hashing). Entries of files that no longer exist are dropped.
    pub fn save(&mut self) {
        let Some(file) = &self.file else { return };
        if !self.changed {
            return;
        }
        self.known
            .retain(|p, _| self.seen.contains_key(p) || p.exists());
        let mut files: Vec<Entry> = self
            .known
            .iter()
            .filter_map(|(p, (s, k))| {
                Some(Entry {
                    path: p.to_str()?.to_string(),
                    stamp: s.clone(),
                    key: k.clone(),
                })
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let record = Record {
            version: VERSION,
            files,
        };
        let Ok(text) = serde_json::to_vec(&record) else {
            return;
        };
        if let Some(dir) = file.parent() {
            if std::fs::create_dir_all(dir).is_err() {
                return;
            }
        }
        if mio_stdlib::fsio::atomic(file, |tmp| std::fs::write(tmp, &text)).is_ok() {
            self.changed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(path: &Path) {
        let t = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_second_call_reads_nothing_and_a_changed_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("mio-hashes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.png");
        let b = dir.join("b\tc\nd.png");
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"two").unwrap();
        old(&a);
        old(&b);
        let record = dir.join("out/file-hashes.json");
        let files = vec![a.clone(), b.clone(), dir.join("missing.png")];
        let mut h = FileHashes::open(&record);
        let first = h.keys(&files);
        assert_eq!(h.read, 3);
        h.save();
        let mut h = FileHashes::open(&record);
        assert_eq!(h.keys(&files), first);
        assert_eq!(h.read, 1, "only the missing file is looked at again");
        // Same size, new bytes, new time: read again, new key.
        std::fs::write(&a, b"uno").unwrap();
        old(&a);
        let mut h = FileHashes::open(&record);
        let third = h.keys(&files);
        assert_eq!(h.read, 2);
        assert_ne!(third[0], first[0]);
        assert_eq!(third[1], first[1]);
        // A damaged record is a cold cache, not an error.
        std::fs::write(&record, b"{\"version\": 1, \"files\": [").unwrap();
        let mut h = FileHashes::open(&record);
        assert_eq!(h.keys(&files), third);
        assert_eq!(h.read, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_written_just_now_is_not_remembered() {
        let dir = std::env::temp_dir().join(format!("mio-hashes-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.png");
        std::fs::write(&a, b"one").unwrap();
        let record = dir.join("file-hashes.json");
        let mut h = FileHashes::open(&record);
        h.keys(std::slice::from_ref(&a));
        h.save();
        let mut h = FileHashes::open(&record);
        h.keys(std::slice::from_ref(&a));
        assert_eq!(h.read, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
