//! The node store on disk: the run folder's lock, publishing a node's finished folder, and
//! checking a finished folder before it is trusted.
//!
//! - **The lock** (`<output>/.mio-lock`): an advisory `flock` held for the whole run, so a second
//!   `mio run` or `mio watch` on the same output refuses (or, for `mio watch`, waits) with a
//!   message naming the holder. The kernel releases it when the holder exits in any way
//!   (kill -9 included), so a lock left by a dead process is simply taken over.
//! - **Publishing**: a node works in `<kind>-<key>.partial/`. When it returns, mio's temporary
//!   files are removed, every remaining file is listed with its length and a hash in
//!   [`DONE_FILE`], and the folder is renamed to `<kind>-<key>/` in one step.
//! - **Checking**: a finished folder is trusted only if its record is there and every file it
//!   lists has its length and hash. A folder that fails is moved aside (`.damaged-TIME`, never
//!   deleted) and the node runs again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The record of a finished node's outputs, inside its folder.
pub const DONE_FILE: &str = "mio-node.json";
/// The run folder's lock file.
pub const LOCK_FILE: &str = ".mio-lock";

/// The lock on a run folder, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Who holds a run folder, as written into the lock file.
#[derive(Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    command: String,
    started: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "this machine".into())
}

#[cfg(unix)]
pub(crate) fn try_lock(f: &File) -> std::io::Result<bool> {
    use std::os::unix::io::AsRawFd as _;
    // SAFETY: flock on a file descriptor we own; no memory is shared with the call.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(not(unix))]
pub(crate) fn try_lock(_: &File) -> std::io::Result<bool> {
    Ok(true)
}

/// What the lock file says of its holder, in words.
fn describe_holder(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    match serde_json::from_str::<Holder>(&text) {
        Ok(h) => format!(
            "`{}` (pid {} on {}, started {} s ago)",
            h.command,
            h.pid,
            h.host,
            now_secs().saturating_sub(h.started)
        ),
        Err(_) => "another mio process".into(),
    }
}

/// Who is running in `out` now, if anyone, without touching the lock (read from the kernel's
/// table of locks, `/proc/locks`, so a run starting at this moment is never disturbed).
/// `None` where that table cannot be read.
pub fn running_in(out: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let path = out.join(LOCK_FILE);
        let meta = std::fs::metadata(&path).ok()?;
        let dev = meta.dev();
        let (major, minor) = (
            ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
            (dev & 0xff) | ((dev >> 12) & !0xff),
        );
        let id = format!("{major:02x}:{minor:02x}:{}", meta.ino());
        let table = std::fs::read_to_string("/proc/locks").ok()?;
        let held = table
            .lines()
            .any(|l| l.contains("FLOCK") && l.split_whitespace().any(|w| w == id));
        held.then(|| describe_holder(&path))
    }
    #[cfg(not(unix))]
    {
        let _ = out;
        None
    }
}

/// Takes the lock of the run folder `out`. When another process holds it: with `wait` unset,
/// an error naming the holder; with `wait`, `waiting(holder)` is called once and the lock is
/// retried every 200 ms until it is free or `wait` is set to stop (then an error).
pub fn lock(
    out: &Path,
    wait: Option<&AtomicBool>,
    mut waiting: impl FnMut(&str),
) -> Result<RunLock, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let path = out.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("{}: cannot open the run folder's lock: {e}", path.display()))?;
    let mut told = false;
    loop {
        match try_lock(&file) {
            Ok(true) => break,
            Ok(false) => {
                let holder = describe_holder(&path);
                match wait {
                    None => {
                        return Err(format!(
                            "{} is in use by {holder}; wait for it to finish or stop it (Ctrl-C \
                             saves its progress), then run again",
                            out.display()
                        ))
                    }
                    Some(stop) => {
                        if stop.load(Ordering::Relaxed) {
                            return Err(format!("{} is in use by {holder}", out.display()));
                        }
                        if !told {
                            waiting(&holder);
                            told = true;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(200));
                    }
                }
            }
            Err(e) => {
                return Err(format!(
                    "{}: cannot lock the run folder: {e}",
                    path.display()
                ))
            }
        }
    }
    let holder = Holder {
        pid: std::process::id(),
        host: hostname(),
        command: std::env::args()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" "),
        started: now_secs(),
    };
    let text = serde_json::to_string(&holder).map_err(|e| e.to_string())?;
    {
        use std::io::{Seek as _, Write as _};
        let mut f = &file;
        // Best effort: the lock itself is the flock, the text only says who holds it.
        let _ = file.set_len(0);
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.write_all(text.as_bytes());
        let _ = f.flush();
    }
    Ok(RunLock { _file: file })
}

/// One output file of a finished node.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Entry {
    /// Relative to the node's folder, `/`-separated (see [`path_to_json`] for other bytes).
    path: serde_json::Value,
    bytes: u64,
    hash: String,
}

#[derive(Serialize, Deserialize)]
struct Done {
    format: u32,
    node: String,
    key: String,
    files: Vec<Entry>,
}

/// A path as JSON: a string when it is UTF-8, else `{"bytes_hex": "..."}` with its raw bytes,
/// so a file name that is not UTF-8 survives the round trip.
pub(crate) fn path_to_json(p: &Path) -> serde_json::Value {
    match p.to_str() {
        Some(s) => serde_json::Value::String(s.to_string()),
        None => {
            let bytes = p.as_os_str().as_encoded_bytes();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({ "bytes_hex": hex })
        }
    }
}

/// The inverse of [`path_to_json`].
pub(crate) fn path_from_json(v: &serde_json::Value) -> Option<PathBuf> {
    match v {
        serde_json::Value::String(s) => Some(PathBuf::from(s)),
        serde_json::Value::Object(o) => {
            let hex = o.get("bytes_hex")?.as_str()?;
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            #[cfg(unix)]
            {
                use std::os::unix::ffi::OsStringExt as _;
                Some(PathBuf::from(std::ffi::OsString::from_vec(bytes?)))
            }
            #[cfg(not(unix))]
            {
                Some(PathBuf::from(String::from_utf8_lossy(&bytes?).into_owned()))
            }
        }
        _ => None,
    }
}

/// Every file under `dir` (relative paths, sorted), and mio's temporary files separately.
fn walk(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut files, mut temps) = (vec![], vec![]);
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in std::fs::read_dir(dir.join(&rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            if e.file_type()?.is_dir() {
                todo.push(r);
            } else if mio_stdlib::fsio::is_temp(&e.file_name()) {
                temps.push(r);
            } else {
                files.push(r);
            }
        }
    }
    files.sort();
    Ok((files, temps))
}

fn entries(dir: &Path, files: &[PathBuf]) -> Result<Vec<Entry>, String> {
    files
        .par_iter()
        .map(|rel| {
            let (bytes, hash) = mio_stdlib::fsio::hash_file(&dir.join(rel))
                .map_err(|e| format!("{}: {e}", dir.join(rel).display()))?;
            Ok(Entry {
                path: path_to_json(rel),
                bytes,
                hash,
            })
        })
        .collect()
}

/// Removes mio's temporary files (left by a kill) from a node's working folder.
pub fn remove_temporaries(dir: &Path) {
    if let Ok((_, temps)) = walk(dir) {
        for t in temps {
            let _ = std::fs::remove_file(dir.join(t));
        }
    }
}

/// Publishes a node's working folder `partial` as its finished folder `dir`: temporaries
/// removed, every file recorded in [`DONE_FILE`], one rename. If a finished folder is already
/// there (another process got there first) and it checks out, the working folder is dropped.
pub fn publish(partial: &Path, dir: &Path, node: &str, key: &str) -> Result<(), String> {
    let (files, temps) = walk(partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    for t in temps {
        let _ = std::fs::remove_file(partial.join(t));
    }
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| f.as_os_str() != DONE_FILE)
        .collect();
    let done = Done {
        format: 1,
        node: node.to_string(),
        key: key.to_string(),
        files: entries(partial, &files)?,
    };
    let text = serde_json::to_string_pretty(&done).map_err(|e| e.to_string())?;
    let record = partial.join(DONE_FILE);
    mio_stdlib::fsio::write_atomic(&record, text.as_bytes())
        .map_err(|e| format!("{}: {e}", record.display()))?;
    match std::fs::rename(partial, dir) {
        Ok(()) => {
            sync_dir(dir.parent());
            Ok(())
        }
        Err(e) if dir.exists() => match check(dir) {
            Check::Finished => {
                let _ = std::fs::remove_dir_all(partial);
                Ok(())
            }
            _ => {
                quarantine(dir)?;
                std::fs::rename(partial, dir)
                    .map_err(|e2| format!("{}: cannot publish it: {e} (then {e2})", dir.display()))
            }
        },
        Err(e) => Err(format!("{}: cannot publish it: {e}", dir.display())),
    }
}

/// Flushes a folder's entries (a rename in it) to the disk, where the platform allows.
fn sync_dir(dir: Option<&Path>) {
    if let Some(d) = dir {
        if let Ok(f) = File::open(d) {
            let _ = f.sync_all();
        }
    }
}

/// The state of a node's finished folder.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// No finished folder.
    Missing,
    /// There and intact.
    Finished,
    /// There, but not as it was written: why.
    Damaged(String),
}

/// Checks a finished folder against its record (lengths and hashes of every file).
pub fn check(dir: &Path) -> Check {
    if !dir.is_dir() {
        return Check::Missing;
    }
    let record = dir.join(DONE_FILE);
    let done: Done = match std::fs::read_to_string(&record) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => return Check::Damaged(format!("its record {DONE_FILE} is damaged ({e})")),
        },
        Err(_) => {
            return Check::Damaged(format!(
                "it has no record of its outputs ({DONE_FILE}; written by mio 0.3 or earlier, \
                 or changed by hand)"
            ))
        }
    };
    let problems: Vec<String> = done
        .files
        .par_iter()
        .filter_map(|e| {
            let Some(rel) = path_from_json(&e.path) else {
                return Some(format!("its record lists an unreadable name ({})", e.path));
            };
            let shown = rel.display().to_string();
            match mio_stdlib::fsio::hash_file(&dir.join(&rel)) {
                Err(err) => Some(format!("{shown}: {err}")),
                Ok((n, _)) if n != e.bytes => Some(format!(
                    "{shown} has {n} bytes where {} were written",
                    e.bytes
                )),
                Ok((_, h)) if h != e.hash => Some(format!("{shown} changed since it was written")),
                Ok(_) => None,
            }
        })
        .collect();
    match problems.first() {
        None => Check::Finished,
        Some(p) if problems.len() == 1 => Check::Damaged(p.clone()),
        Some(p) => Check::Damaged(format!("{p}, and {} more file(s)", problems.len() - 1)),
    }
}

/// Moves a damaged finished folder aside (`<name>.damaged-<unix time>`), keeping every byte,
/// and returns where it went.
pub fn quarantine(dir: &Path) -> Result<PathBuf, String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let secs = now_secs();
    let mut to = dir.with_file_name(format!("{name}.damaged-{secs}"));
    let mut n = 1;
    while to.exists() {
        n += 1;
        to = dir.with_file_name(format!("{name}.damaged-{secs}-{n}"));
    }
    std::fs::rename(dir, &to)
        .map_err(|e| format!("{}: cannot move it aside: {e}", dir.display()))?;
    Ok(to)
}

/// Whether a node's working folder holds progress worth resuming (a training checkpoint).
pub fn has_progress(partial: &Path) -> bool {
    std::fs::read_dir(partial)
        .map(|rd| {
            rd.flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.ends_with(".safetensors")
                    && (n.starts_with("stage") || n.starts_with("classifier.ckpt"))
            })
        })
        .unwrap_or(false)
}

/// The folder of a node's finished outputs.
pub fn node_dir(store: &Path, kind: crate::plan::NodeKind, key: &str) -> PathBuf {
    store.join(format!("{}-{key}", kind.as_str()))
}

/// Where a checked program's runs go: `<dir of the file>/<output setting>`.
pub fn output_dir(base: &Path, workflows: &[crate::ir::Workflow]) -> PathBuf {
    let out = workflows
        .first()
        .and_then(|w| w.setting("output"))
        .and_then(|v| match v {
            crate::ir::Value::Str(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "runs".into());
    base.join(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mio-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_published_folder_is_checked_file_by_file() {
        let root = temp("publish");
        let partial = root.join("eval-1.partial");
        std::fs::create_dir_all(partial.join("images/noise")).unwrap();
        std::fs::write(partial.join("results.json"), b"{}").unwrap();
        std::fs::write(partial.join("images/noise/a.png"), b"png bytes").unwrap();
        std::fs::write(partial.join(".results.json.77-0.mio-tmp"), b"half").unwrap();
        std::fs::write(partial.join("images/noise/.a.png.77.tmp"), b"half").unwrap();
        let dir = root.join("eval-1");
        publish(&partial, &dir, "w/e", "1").unwrap();
        assert!(!partial.exists());
        assert_eq!(check(&dir), Check::Finished);
        // Exactly the outputs and the record: the temporaries are gone.
        let (files, temps) = walk(&dir).unwrap();
        assert!(temps.is_empty());
        assert_eq!(files.len(), 3, "{files:?}");
        // A file changed in place, one truncated, one removed: each is noticed.
        std::fs::write(dir.join("results.json"), b"{]").unwrap();
        assert!(matches!(check(&dir), Check::Damaged(m) if m.contains("results.json changed")));
        std::fs::write(dir.join("results.json"), b"{}").unwrap();
        std::fs::write(dir.join("images/noise/a.png"), b"png").unwrap();
        assert!(matches!(check(&dir), Check::Damaged(m) if m.contains("has 3 bytes where 9")));
        std::fs::remove_file(dir.join("images/noise/a.png")).unwrap();
        assert!(matches!(check(&dir), Check::Damaged(_)));
        // Moved aside, not deleted.
        let aside = quarantine(&dir).unwrap();
        assert!(aside.join("results.json").is_file() && !dir.exists());
        assert_eq!(check(&dir), Check::Missing);
        // A folder without a record is not trusted.
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(check(&dir), Check::Damaged(m) if m.contains("no record")));
    }

    #[test]
    fn the_lock_is_exclusive_names_its_holder_and_is_released_on_drop() {
        let root = temp("lock");
        assert_eq!(running_in(&root), None);
        let first = lock(&root, None, |_| {}).unwrap();
        if std::path::Path::new("/proc/locks").exists() {
            let who = running_in(&root).expect("the held lock is seen");
            assert!(
                who.contains(&format!("pid {}", std::process::id())),
                "{who}"
            );
        }
        let e = lock(&root, None, |_| {}).unwrap_err();
        assert!(
            e.contains("is in use by `") && e.contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        // Waiting says once who holds it, and gives up when told to stop.
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(700));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let mut said = vec![];
        assert!(lock(&root, Some(&stop), |h| said.push(h.to_string())).is_err());
        stopper.join().unwrap();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains(&format!("pid {}", std::process::id())));
        drop(first);
        assert_eq!(running_in(&root), None);
        let _again = lock(&root, None, |_| {}).unwrap();
    }

    #[test]
    fn paths_that_are_not_utf8_survive_json() {
        for p in ["a/b.png", "caf\u{e9}.png"] {
            assert_eq!(
                path_from_json(&path_to_json(Path::new(p))).unwrap(),
                Path::new(p)
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt as _;
            let odd = Path::new(std::ffi::OsStr::from_bytes(b"x\xff\xfe.png"));
            let v = path_to_json(odd);
            assert!(v.is_object(), "{v}");
            assert_eq!(path_from_json(&v).unwrap(), odd);
        }
    }
}
