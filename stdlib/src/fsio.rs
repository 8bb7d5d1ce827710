//! Writing files so that nothing half-written is ever read, and nothing written is lost.
//!
//! Every file mio writes for later goes through [`atomic`]: the bytes go to a temporary file in
//! the same folder, with a name unique to this process and call (`.NAME.PID-N.mio-tmp`), are
//! flushed to the disk, and the temporary file is renamed over the target in one step. A kill
//! at any moment leaves the old file or the new one, never a mixture; a temporary file left by
//! a kill is recognised by [`is_temp`] and removed by whoever finishes the folder.
//!
//! Fault injection: with `MIO_KILL_AT_WRITE=N` in the environment, the process kills itself
//! (SIGKILL, as `kill -9` would) at the N-th write point, counting two points per atomic write
//! (the temporary file complete, then the rename done). The fault-injection tests use it to stop
//! a run at chosen moments.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The suffix of every temporary file mio writes.
pub const TEMP_SUFFIX: &str = ".mio-tmp";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary name for `path`, in the same folder (so the rename stays on one filesystem)
/// and unique to this process and call.
pub fn temp_for(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or(OsStr::new("file")));
    name.push(format!(
        ".{}-{}{TEMP_SUFFIX}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    dir.join(name)
}

/// Whether a file name is one of mio's temporary files (this version's, or the
/// `NAME.tmpPID` / `.NAME.PID.tmp` names of earlier versions).
pub fn is_temp(name: &OsStr) -> bool {
    let n = name.to_string_lossy();
    if n.ends_with(TEMP_SUFFIX) {
        return true;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // `results.tmp1234` (earlier `write_atomic` and checkpoints)
    if let Some((_, ext)) = n.rsplit_once('.') {
        if ext.strip_prefix("tmp").is_some_and(digits) {
            return true;
        }
    }
    // `.camera.png.1234.tmp` (earlier PNG writes)
    if let Some(rest) = n.strip_prefix('.').and_then(|r| r.strip_suffix(".tmp")) {
        if rest.rsplit_once('.').is_some_and(|(_, pid)| digits(pid)) {
            return true;
        }
    }
    false
}

/// A write point for fault injection (see the module's docs).
pub fn fault_point() {
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static POINTS: AtomicU64 = AtomicU64::new(0);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("MIO_KILL_AT_WRITE")
            .ok()
            .and_then(|v| v.trim().parse().ok())
    });
    if let Some(n) = *limit {
        if POINTS.fetch_add(1, Ordering::SeqCst) + 1 == n {
            kill_self();
        }
    }
}

#[cfg(unix)]
fn kill_self() {
    // SAFETY: sending a signal to our own process has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_self() {
    std::process::abort();
}

/// Writes `path` through `write(temporary path)`, flushes it to the disk and renames it into
/// place. On failure the temporary file is removed and the target is left as it was.
pub fn atomic<E: std::fmt::Display>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
) -> std::io::Result<()> {
    let tmp = temp_for(path);
    let result = write(&tmp)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(with_fix(e));
    }
    fault_point();
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    fault_point();
    Ok(())
}

/// A full disk or quota says what to do about it.
fn with_fix(e: std::io::Error) -> std::io::Error {
    let full = e.raw_os_error() == Some(28) // ENOSPC
        || e.raw_os_error() == Some(122) // EDQUOT
        || e.to_string().contains("No space left on device");
    if full {
        std::io::Error::new(
            e.kind(),
            format!("{e}: the disk (or your quota) is full; free some space and run again (finished steps are kept)"),
        )
    } else {
        e
    }
}

/// Writes `bytes` to `path` atomically (see [`atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    atomic(path, |tmp| -> std::io::Result<()> {
        let mut f = std::fs::File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// A fast 64-bit hash of a file's bytes (not cryptographic: it detects damage, not tampering)
/// and its length. Reads in 1 MiB blocks.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut h = Hasher::new();
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, format!("{:016x}", h.finish())))
}

/// Word-at-a-time mixing (a multiply-xorshift over 8-byte words), several times the speed of
/// byte-wise FNV; the result depends on the bytes alone, however they are split into blocks.
struct Hasher {
    h: u64,
    tail: Vec<u8>,
}

impl Hasher {
    fn new() -> Hasher {
        Hasher {
            h: 0x9e37_79b9_7f4a_7c15,
            tail: vec![],
        }
    }

    fn mix(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd);
        self.h ^= self.h >> 29;
    }

    fn update(&mut self, mut bytes: &[u8]) {
        if !self.tail.is_empty() {
            let take = (8 - self.tail.len()).min(bytes.len());
            self.tail.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.tail.len() < 8 {
                return;
            }
            let w = u64::from_le_bytes(self.tail[..].try_into().expect("8 bytes"));
            self.tail.clear();
            self.mix(w);
        }
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        self.tail.extend_from_slice(chunks.remainder());
    }

    fn finish(mut self) -> u64 {
        let tail = std::mem::take(&mut self.tail);
        for c in tail.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        self.mix(tail.len() as u64);
        self.h
    }
}

/// Two paths name the same existing file (hard links and symbolic links included).
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
        false
    }
    #[cfg(not(unix))]
    {
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_unique_hidden_and_recognised() {
        let a = temp_for(Path::new("/x/results.json"));
        let b = temp_for(Path::new("/x/results.json"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/x")));
        let name = a.file_name().unwrap();
        assert!(name.to_string_lossy().starts_with(".results.json."));
        assert!(is_temp(name));
        for old in ["results.tmp1234", ".camera.png.77.tmp", "stage1.tmp9"] {
            assert!(is_temp(OsStr::new(old)), "{old}");
        }
        for keep in [
            "results.json",
            "camera.png",
            "notes.tmp",
            "a.tmpx",
            ".hidden.png",
        ] {
            assert!(!is_temp(OsStr::new(keep)), "{keep}");
        }
    }

    #[test]
    fn an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("mio-fsio-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.txt");
        write_atomic(&p, b"one").unwrap();
        let r = atomic(&p, |tmp| -> Result<(), String> {
            std::fs::write(tmp, b"half").unwrap();
            Err("disk full".into())
        });
        assert!(r.unwrap_err().to_string().contains("disk full"));
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        // The hash sees every byte, its position and the length.
        let h = |bytes: &[u8]| {
            let q = dir.join("h");
            std::fs::write(&q, bytes).unwrap();
            hash_file(&q).unwrap()
        };
        assert_eq!(h(b"abcdefghij").0, 10);
        assert_ne!(h(b"abcdefghij").1, h(b"abcdefghik").1);
        assert_ne!(h(b"abcdefgh").1, h(b"abcdefgh\0").1);
        assert_eq!(h(b"abcdefghij").1, h(b"abcdefghij").1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
