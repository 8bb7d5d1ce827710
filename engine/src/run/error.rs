//! Why a run or a step stopped, as types: what failed, on which file, and what to do. A
//! worker process writes its step's error as data (`worker::Outcome`), so the process that
//! started it reports it exactly as if the step had run in its own thread.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::artifact::json_path;

/// Why a run stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum RunError {
    /// A step failed.
    Node { node: String, error: NodeError },
    /// Stopped by the user (Ctrl-C, SIGTERM, SIGHUP); what was finished is kept.
    Interrupted { node: String },
    /// Another process is running in the same output folder: who.
    Busy(String),
    /// A job file that cannot be used (unreadable, damaged, from another mio): why.
    Job(String),
    /// The run folder itself cannot be read or written.
    Io(PathBuf, String),
}

impl RunError {
    pub fn node(node: &str, error: NodeError) -> RunError {
        RunError::Node {
            node: node.to_string(),
            error,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Node { node, error } => write!(f, "{node}: {error}"),
            RunError::Interrupted { node } => write!(
                f,
                "interrupted during {node}; its progress is saved and `mio run` continues from there"
            ),
            RunError::Busy(why) | RunError::Job(why) => write!(f, "{why}"),
            RunError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for RunError {}

/// Why a step failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum NodeError {
    /// A file or folder it reads cannot be used: missing, unreadable, not an image, damaged.
    Read {
        #[serde(with = "json_path")]
        path: PathBuf,
        why: String,
    },
    /// A file it writes cannot be written: a full disk, permissions.
    Write {
        #[serde(with = "json_path")]
        path: PathBuf,
        why: String,
    },
    /// Output of a step it reads is missing (deleted while the run went on).
    Missing(String),
    /// A step it reads has not finished (a worker started before its inputs).
    NotReady {
        input: String,
        #[serde(with = "json_path")]
        folder: PathBuf,
    },
    /// The experiment cannot be run as written: a task the model was not trained on, a batch
    /// that does not fit in memory, a device that is not there. The message says what to
    /// change.
    Experiment(String),
    /// Training stopped: the loss diverged.
    Training(String),
    /// A computation failed (a tensor operation; on a GPU, often its memory).
    Compute(String),
    /// The process running the step was killed (out of memory, a scheduler's time limit,
    /// `kill -9`) before it could say anything.
    Killed { signal: i32 },
    /// mio crashed in the step: a bug.
    Crashed(String),
}

impl NodeError {
    pub fn read(path: impl Into<PathBuf>, why: impl std::fmt::Display) -> NodeError {
        NodeError::Read {
            path: path.into(),
            why: why.to_string(),
        }
    }

    pub fn write(path: impl Into<PathBuf>, why: impl std::fmt::Display) -> NodeError {
        NodeError::Write {
            path: path.into(),
            why: why.to_string(),
        }
    }

    pub fn compute(why: impl std::fmt::Display) -> NodeError {
        NodeError::Compute(why.to_string())
    }

    pub fn experiment(why: impl std::fmt::Display) -> NodeError {
        NodeError::Experiment(why.to_string())
    }
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::Read { path, why } => {
                let shown = path.display().to_string();
                // Messages from the image reader already name the file.
                if why.starts_with(&shown) {
                    write!(f, "{why}")
                } else {
                    write!(f, "{shown}: {why}")
                }
            }
            NodeError::Write { path, why } => write!(
                f,
                "cannot write {}: {why}; free some space or fix the folder's permissions, then run again (finished steps are kept)",
                path.display()
            ),
            NodeError::Missing(what) => write!(
                f,
                "{what} is missing; run again (finished steps are kept and the missing one is redone)"
            ),
            NodeError::NotReady { input, folder } => write!(
                f,
                "its input {input} ({}) is not finished; run that step first",
                folder.display()
            ),
            NodeError::Experiment(why) | NodeError::Training(why) | NodeError::Compute(why) => {
                write!(f, "{why}")
            }
            NodeError::Killed { signal } => write!(
                f,
                "its worker process was killed (signal {signal}{}); what it had checkpointed is \
                 kept and `mio run` continues from there",
                match signal {
                    9 => ": SIGKILL, often the system running out of memory or a time limit",
                    _ => "",
                }
            ),
            NodeError::Crashed(what) => write!(
                f,
                "mio crashed in this step ({what}); this is a bug in mio, please report it with \
                 the file; finished steps are kept"
            ),
        }
    }
}
