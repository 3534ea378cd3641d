//! The store's errors: one enum, [`StoreError`], whose every variant names the operation and
//! the database, and says what to do where the user can do something. It owns no I/O.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

use super::{Fault, Holder};

/// Everything that can go wrong in the store. Each error names the operation and the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot start the thread that writes to the state database {path}: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the state database {path}: {source}")]
    CreateFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the state directory {dir} is in use by another canaryd ({holder}); one daemon per \
         state directory: stop that one first, or give this one another `state_dir`"
    )]
    Locked { dir: PathBuf, holder: Holder },
    #[error("{fault}; canaryd has stopped recording and acting: {}", fault.advice())]
    Failed { fault: Fault },
    #[error(
        "the state database {} is missing, but {} shows a canaryd kept its history here: \
         starting would begin every rollout again at its first stage, wherever the traffic was \
         left. Put the database back{}, or delete {} to start afresh with no history",
        db.display(),
        lock.display(),
        lost_copies(rescued),
        lock.display()
    )]
    Lost {
        db: PathBuf,
        lock: PathBuf,
        rescued: Vec<PathBuf>,
    },
    #[error("cannot lock the state directory through {path}: {source}")]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{op}: the state database {path} is corrupt or not a SQLite database ({source}); \
         move it aside and restart to begin with an empty history"
    )]
    Corrupt {
        op: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the state database {path} has schema version {found}, but this canaryd only knows \
         versions up to {supported}; run a newer canaryd or use another state directory"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("migrating the state database {path} to schema version {version} failed: {source}")]
    Migration {
        path: PathBuf,
        version: u32,
        source: rusqlite::Error,
    },
    #[error("{op} failed on the state database {path}: {source}")]
    Sql {
        op: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{op} on the state database {path}: cannot convert the {what} to or from JSON: {source}"
    )]
    Json {
        op: &'static str,
        path: PathBuf,
        what: String,
        source: serde_json::Error,
    },
    #[error("{op} on the state database {path}: stored {what} is invalid: {detail}")]
    BadValue {
        op: &'static str,
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error(
        "{op} on the state database {path}: an actuator intent with idempotency key `{key}` is \
         already recorded, so nothing of this step was written"
    )]
    DuplicateIntent {
        op: &'static str,
        path: PathBuf,
        key: String,
    },
    #[error("{op} on the state database {path}: there is no {what} with id {id}")]
    NotFound {
        op: &'static str,
        path: PathBuf,
        what: &'static str,
        id: i64,
    },
    #[error("{op} on the state database {path}: {what} {id} is already {status}, not pending")]
    NotPending {
        op: &'static str,
        path: PathBuf,
        what: &'static str,
        id: i64,
        status: String,
    },
    /// A call on the blocking pool ([`Store::call`](super::Store::call)) did not finish: its
    /// closure panicked, or the runtime is shutting down. A bug or a shutdown, not the storage.
    #[error("a call to the state database {path} did not finish: {message}")]
    Task { path: PathBuf, message: String },
}

/// " (... saved when it was deleted: A, B)" for [`StoreError::Lost`], or nothing.
fn lost_copies(rescued: &[PathBuf]) -> String {
    if rescued.is_empty() {
        return String::new();
    }
    let names: Vec<String> = rescued.iter().map(|p| p.display().to_string()).collect();
    format!(
        " (canaryd saved what it had open when it was deleted: {}; move the newest to its place)",
        names.join(", ")
    )
}

impl StoreError {
    /// Wraps a SQLite error, telling corruption apart from other failures.
    pub(super) fn sql(op: &'static str, path: &Path, source: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { op, path, source }
            }
            _ => StoreError::Sql { op, path, source },
        }
    }
}
