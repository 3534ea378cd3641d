//! canaryd's durable store: one SQLite database, `canaryd.db` in the state directory, holding
//! each rollout's state and its history (analyses, audit), the actuator intents and the
//! notification outbox, and the daemon's flags. It owns the schema, its migrations and every SQL
//! statement; it must not decide anything (the state machine does) nor talk to the outside world
//! (the runner and the notifiers do): it records what they decided, atomically.
//!
//! # The key operation
//! [`Store::commit_step`] writes a decision (new state, audit entries, actuator intent,
//! notifications, analysis) in one transaction: all of it is recorded or none of it. The runner
//! records an intent *before* calling the actuator and its completion after
//! ([`Store::complete_intent`]); on start-up, [`Store::pending_intents`] lists the intents whose
//! outcome is unknown, to be re-driven with the same idempotency key.
//!
//! # Durability
//! The database runs in WAL mode with `synchronous=FULL`. Against a `kill -9` any setting would
//! do: in WAL mode a commit returns once its frames are written to the WAL file, i.e. handed to
//! the kernel, and a dead process cannot take them back (`tests/store_crash.rs` checks this with
//! real SIGKILLs). Against power loss or a kernel crash, `NORMAL` is not enough: it syncs the WAL
//! only at checkpoints, so the last commits before the outage can vanish, and a weight change
//! already sent to the actuator would be forgotten. `FULL` syncs the WAL at every commit, so a
//! commit that returned survives power loss too (given a disk that honours fsync).
//!
//! # Group commit
//! One fsync per commit caps a single writer at a few hundred commits a second, below the
//! daemon's target of 1,000 analyses a second. So steps go through one writer thread (`group`):
//! [`Store::commit_step`] (blocking) and [`Store::submit_step`] (a future) serialise the step to
//! JSON on the caller's side and queue it; the thread takes the writer connection, then every
//! step queued by then, writes each inside its own `SAVEPOINT` (a failing step is rolled back
//! alone and only its caller gets the error) through cached prepared statements, commits once,
//! and only then answers each caller, so each step is as durable on return as if written alone.
//! WAL checkpoints run on another background thread (`checkpoint`), off the commit path.
//! `bench/store_commits.sh` measures the rate with 1 to 64 writers.
//!
//! # The WAL index lives in memory, and the database is this process's alone
//! In WAL mode SQLite keeps an index of the log in a `-shm` file that every connection maps into
//! memory (`MAP_SHARED`) and writes through plain stores, not `write(2)`. When the kernel cannot
//! back such a store, because the file was cut short under the mapping, or the file system under
//! it went read-only or cannot allocate the page, it does not return an error: it sends SIGBUS,
//! which SQLite does not handle, so the daemon died on the spot with no log line. Every connection
//! is therefore opened through SQLite's `unix-excl` VFS ([`VFS`]): this process takes an exclusive
//! lock on the database file while it has it open, and the WAL index is kept in the process's
//! heap, shared by its connections, with no `-shm` file at all; a storage failure is then an
//! error from a system call, which the store reports (see `health`). The price: no other process
//! can read the database while a daemon has it open ("database is locked"); stop the daemon to
//! inspect or copy it. The reader is opened read-write with `query_only` set: a read-only
//! connection would take its own POSIX locks and could release the process's exclusive one.
//!
//! # Concurrency
//! [`Store`] is synchronous, cheap to clone, `Send + Sync`: async callers wrap calls in
//! `tokio::task::spawn_blocking`, except steps, which they hand to [`Store::submit_step`] and
//! await without holding a thread. This keeps the store free of any runtime (tests and tools use
//! it directly). Writes go through one connection behind a mutex, each in an `IMMEDIATE`
//! transaction; reads (the HTTP API, `/metrics`) use a second, read-only connection behind its
//! own mutex, so thanks to WAL they see the last committed data without waiting for a writer's
//! fsync.

mod checkpoint;
mod group;
mod health;
mod lock;
mod records;
mod runs;
mod schema;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use health::Fault;
pub use lock::{Holder, LOCK_FILE, StateLock};
pub use records::{
    Analysis, AuditEntry, BadCursor, Committed, Cursor, Flag, Intent, IntentStatus, Message,
    MessageStatus, NewAnalysis, NewAudit, NewIntent, NewMessage, NewRun, OutboxCounts, Page,
    RunRecord, Step, StoredRollout,
};
pub use schema::LATEST_VERSION;

/// The database's file name inside the state directory.
pub const DB_FILE: &str = "canaryd.db";

/// The SQLite VFS of every connection: exclusive to this process, WAL index on the heap (see
/// the module's documentation).
pub const VFS: &str = "unix-excl";

/// Opens `path` through [`VFS`].
fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    Connection::open_with_flags_and_vfs(path, flags, VFS)
}

/// How long a statement waits for another process's lock before failing with "database is
/// locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The most rows one page of a listing returns; larger limits are cut to this.
pub const MAX_PAGE: usize = 1000;

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
    fn sql(op: &'static str, path: &Path, source: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt { op, path, source }
            }
            _ => StoreError::Sql { op, path, source },
        }
    }
}

/// Handle on the state database; clones share the same connections.
#[derive(Debug, Clone)]
pub struct Store {
    /// Declared first: fields drop in order, so the last handle's drop lets the writer thread
    /// finish its queued steps (and release its share of `inner`) before the connections close.
    steps: Arc<group::Group<StepJob, Result<Committed, StoreError>>>,
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    /// The files' identities and the latched fault (see `health`).
    health: health::Health,
    /// Declared last: fields drop in order, so its thread stops after the other connections
    /// are closed.
    checkpoints: checkpoint::Checkpointer,
}

/// A mutex around a connection stays usable after a panic elsewhere: an open transaction was
/// rolled back when its guard dropped.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

fn millis_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating it if needed) `canaryd.db` in `state_dir`, and migrates it to the latest
    /// schema. Fails if the database comes from a newer canaryd, or is corrupt.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        Self::open_file(&path, schema::MIGRATIONS)
    }

    fn open_file(path: &Path, migrations: &[&str]) -> Result<Store, StoreError> {
        let mut writer = open_writer(path)?;
        schema::migrate(&mut writer, path, migrations)?;
        let reader = open_reader(path)?;
        let checkpoints =
            checkpoint::Checkpointer::start(open_checkpointer(path)?, path, checkpoint::POLICY);
        // Every connection is open, so the write-ahead log exists: both files are watched.
        let health = health::Health::watch(path);
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            health,
            checkpoints,
        });
        let batches = Arc::clone(&inner);
        let steps =
            group::Group::start("canaryd-commit", move |jobs| batches.commit_batch(jobs), {
                let path = path.to_path_buf();
                move || {
                    Err(StoreError::BadValue {
                        op: COMMIT_OP,
                        path: path.clone(),
                        what: "group commit",
                        detail:
                            "the batch holding this step failed unexpectedly (a bug); the step \
                             may not be recorded"
                                .to_string(),
                    })
                }
            })
            .map_err(|source| StoreError::Thread {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Store {
            steps: Arc::new(steps),
            inner,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The fault that stopped the store's writes, if one was found (no I/O): the database file
    /// deleted or replaced, or a storage-level error. Latched until the process ends.
    pub fn fault(&self) -> Option<Fault> {
        self.inner.health.fault().cloned()
    }

    /// Looks for a fault now: whether the database file and its write-ahead log at their paths
    /// are still the ones the store has open (two `stat`s), or a fault found before. Writes do
    /// the same before they begin; the daemon also calls this on a short timer. A file found
    /// deleted or replaced has the history still open saved next to it first (see [`Fault`]).
    pub fn check(&self) -> Result<(), Fault> {
        if let Some(fault) = self.inner.health.fault() {
            return Err(fault.clone());
        }
        if self.inner.health.mismatch().is_none() {
            return Ok(());
        }
        let conn = lock(&self.inner.writer);
        self.inner.check_on(&conn)
    }

    /// The database's schema version ([`LATEST_VERSION`] once open).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&lock(&self.inner.reader), self.path())
    }

    fn sql(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::sql(op, self.path(), source)
    }

    fn json(
        &self,
        op: &'static str,
        what: impl Into<String>,
        source: serde_json::Error,
    ) -> StoreError {
        StoreError::Json {
            op,
            path: self.path().to_path_buf(),
            what: what.into(),
            source,
        }
    }

    fn bad(&self, op: &'static str, what: &'static str, detail: String) -> StoreError {
        StoreError::BadValue {
            op,
            path: self.path().to_path_buf(),
            what,
            detail,
        }
    }

    fn time(
        &self,
        op: &'static str,
        what: &'static str,
        ms: i64,
    ) -> Result<DateTime<Utc>, StoreError> {
        DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| self.bad(op, what, format!("{ms} ms is not a representable time")))
    }

    fn opt_time(
        &self,
        op: &'static str,
        what: &'static str,
        ms: Option<i64>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        ms.map(|ms| self.time(op, what, ms)).transpose()
    }

    fn weight(&self, op: &'static str, what: &'static str, value: i64) -> Result<u8, StoreError> {
        u8::try_from(value)
            .ok()
            .filter(|w| *w <= 100)
            .ok_or_else(|| {
                self.bad(
                    op,
                    what,
                    format!("{value} is not a weight between 0 and 100"),
                )
            })
    }

    /// Runs `f` in an `IMMEDIATE` transaction on the writer connection and commits it; an error
    /// from `f` rolls everything back.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.inner.writer);
        self.inner.verify(&conn)?;
        let written: Result<_, StoreError> = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.sql(op))?;
            let before = tx.total_changes();
            let out = f(&tx)?;
            let changed = tx.total_changes() != before;
            tx.commit().map_err(self.sql(op))?;
            Ok((out, changed))
        })();
        let (out, changed) = written.inspect_err(|e| self.inner.health.note(e))?;
        // A transaction that changed nothing (a poll of the outbox finding nothing to claim)
        // leaves nothing to checkpoint.
        if changed {
            self.inner.checkpoints.wrote(1);
        }
        Ok(out)
    }

    /// Writes noted for the checkpoint thread so far.
    #[cfg(test)]
    pub(crate) fn writes_noted(&self) -> u64 {
        self.inner.checkpoints.noted()
    }

    /// Runs `f` on the read-only connection, inside one read transaction so that it sees a
    /// single snapshot.
    fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.inner.reader);
        let read: Result<_, StoreError> = (|| {
            let tx = conn.transaction().map_err(self.sql(op))?;
            let out = f(&tx)?;
            tx.finish().map_err(self.sql(op))?;
            Ok(out)
        })();
        read.inspect_err(|e| self.inner.health.note(e))
    }

    // ----- the key operation -----

    /// Records one decision of the state machine, all or nothing: the rollout's new state, its
    /// audit entries, the actuator intent (status pending), the notifications (skipping any whose
    /// dedupe key is already enqueued, due at `step.at`) and the analysis. Fails, writing
    /// nothing, if the intent's idempotency key is already recorded.
    ///
    /// Returns once the step is durable. Steps committed at the same time from several threads
    /// share one transaction and one fsync (group commit, see the module's documentation); each
    /// step still succeeds or fails on its own.
    pub fn commit_step<S: Serialize>(&self, step: &Step<'_, S>) -> Result<Committed, StoreError> {
        let job = self.step_job(step)?;
        self.steps.run(job)
    }

    /// [`Store::commit_step`] for async callers: the step is serialised now, and the future
    /// resolves once it is durable, without holding a thread (of the blocking pool or any other)
    /// while the batch holding it is written.
    pub fn submit_step<S: Serialize>(
        &self,
        step: &Step<'_, S>,
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send + 'static {
        let job = self.step_job(step);
        let committed = job.map(|job| self.steps.submit(job));
        async move { committed?.await }
    }

    /// Serialises a step on the caller's thread, so that the batch's leader only runs SQL.
    fn step_job<S: Serialize>(&self, step: &Step<'_, S>) -> Result<StepJob, StoreError> {
        const OP: &str = COMMIT_OP;
        let state = serde_json::to_string(step.state)
            .map_err(|e| self.json(OP, format!("state of rollout `{}`", step.rollout), e))?;
        let analysis = step.analysis.as_ref().map(|analysis| AnalysisJob {
            outcome: analysis.outcome.clone(),
            score: analysis.score.filter(|s| !s.is_nan()),
            evidence: analysis.evidence.get().to_string(),
        });
        let outbox = step
            .outbox
            .iter()
            .map(MessageJob::new)
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| self.json(OP, "notification payload", e))?;
        Ok(StepJob {
            rollout: step.rollout.to_string(),
            state,
            rule_fingerprint: step.rule_fingerprint.to_string(),
            at: millis(step.at),
            audit: step.audit.clone(),
            intent: step.intent.clone(),
            outbox,
            analysis,
            run: step.run.max(1),
            run_started: step.run_started.clone(),
        })
    }

    // ----- rollouts -----

    /// The saved state of one rollout, if it has one.
    pub fn rollout<S: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<StoredRollout<S>>, StoreError> {
        const OP: &str = "load rollout";
        let row = self.read(OP, |conn| {
            one(
                conn,
                "SELECT name, state, rule_fingerprint, updated_at FROM rollouts WHERE name = ?1",
                [name],
                RolloutRow::from_row,
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        row.map(|row| self.rollout_from(OP, row)).transpose()
    }

    /// Every saved rollout, by name.
    pub fn rollouts<S: DeserializeOwned>(&self) -> Result<Vec<StoredRollout<S>>, StoreError> {
        const OP: &str = "list rollouts";
        let rows = self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, state, rule_fingerprint, updated_at FROM rollouts ORDER BY name",
                )
                .map_err(self.sql(OP))?;
            stmt.query_map([], RolloutRow::from_row)
                .map_err(self.sql(OP))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql(OP))
        })?;
        rows.into_iter()
            .map(|row| self.rollout_from(OP, row))
            .collect()
    }

    fn rollout_from<S: DeserializeOwned>(
        &self,
        op: &'static str,
        row: RolloutRow,
    ) -> Result<StoredRollout<S>, StoreError> {
        let state = serde_json::from_str(&row.state)
            .map_err(|e| self.json(op, format!("state of rollout `{}`", row.name), e))?;
        Ok(StoredRollout {
            updated_at: self.time(op, "rollouts.updated_at", row.updated_at)?,
            name: row.name,
            state,
            rule_fingerprint: row.rule_fingerprint,
        })
    }

    // ----- history: audit and analyses -----

    /// A rollout's audit entries, newest first, `limit` (at most [`MAX_PAGE`]) per page,
    /// starting after `cursor` (from the start when `None`).
    pub fn audit_page(
        &self,
        rollout: &str,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StoreError> {
        self.audit_page_of(rollout, None, cursor, limit)
    }

    /// [`Store::audit_page`] of one run only, or of every run with `None`.
    pub fn audit_page_of(
        &self,
        rollout: &str,
        run: Option<u32>,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, StoreError> {
        const OP: &str = "list audit entries";
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, rollout, at, action, previous_weight, new_weight, reason,
                         triggered_by, run
                     FROM audit WHERE rollout = ?1 AND id < ?2 AND (?4 IS NULL OR run = ?4)
                     ORDER BY id DESC LIMIT ?3",
                )
                .map_err(self.sql(OP))?;
            let args = params![rollout, after(cursor), limit as i64 + 1, run];
            stmt.query_map(args, |row| {
                Ok(AuditRow {
                    id: row.get(0)?,
                    run: row.get(8)?,
                    rollout: row.get(1)?,
                    at: row.get(2)?,
                    action: row.get(3)?,
                    previous_weight: row.get(4)?,
                    new_weight: row.get(5)?,
                    reason: row.get(6)?,
                    triggered_by: row.get(7)?,
                })
            })
            .map_err(self.sql(OP))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(OP))
        })?;
        let entries = rows
            .into_iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.id,
                    run: row.run,
                    rollout: row.rollout,
                    at: self.time(OP, "audit.at", row.at)?,
                    action: row.action,
                    previous_weight: row
                        .previous_weight
                        .map(|w| self.weight(OP, "audit.previous_weight", w))
                        .transpose()?,
                    new_weight: row
                        .new_weight
                        .map(|w| self.weight(OP, "audit.new_weight", w))
                        .transpose()?,
                    reason: row.reason,
                    triggered_by: row.triggered_by,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(paginate(entries, limit, |e| e.id))
    }

    /// A rollout's analyses, newest first, paginated like [`Store::audit_page`].
    pub fn analyses_page(
        &self,
        rollout: &str,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Analysis>, StoreError> {
        self.analyses_page_of(rollout, None, cursor, limit)
    }

    /// [`Store::analyses_page`] of one run only, or of every run with `None`.
    pub fn analyses_page_of(
        &self,
        rollout: &str,
        run: Option<u32>,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Page<Analysis>, StoreError> {
        const OP: &str = "list analyses";
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self.read(OP, |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, rollout, at, outcome, score, evidence, run
                     FROM analyses WHERE rollout = ?1 AND id < ?2 AND (?4 IS NULL OR run = ?4)
                     ORDER BY id DESC LIMIT ?3",
                )
                .map_err(self.sql(OP))?;
            let args = params![rollout, after(cursor), limit as i64 + 1, run];
            stmt.query_map(args, |row| {
                Ok((
                    (row.get::<_, i64>(0)?, row.get::<_, u32>(6)?),
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<f64>>(4)?,
                    row.get::<_, String>(5)?,
                ))
            })
            .map_err(self.sql(OP))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(OP))
        })?;
        let analyses = rows
            .into_iter()
            .map(|((id, run), rollout, at, outcome, score, evidence)| {
                Ok(Analysis {
                    id,
                    run,
                    at: self.time(OP, "analyses.at", at)?,
                    evidence: serde_json::from_str(&evidence)
                        .map_err(|e| self.json(OP, format!("evidence of analysis {id}"), e))?,
                    rollout,
                    outcome,
                    score,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(paginate(analyses, limit, |a| a.id))
    }

    /// The evidence of a rollout's newest analysis, read as `T` (a part of it: serde skips the
    /// fields `T` does not name); `None` when it has none yet.
    pub fn latest_evidence<T: DeserializeOwned>(
        &self,
        rollout: &str,
    ) -> Result<Option<T>, StoreError> {
        const OP: &str = "read the latest analysis";
        let row = self.read(OP, |conn| {
            one(
                conn,
                "SELECT id, evidence FROM analyses WHERE rollout = ?1 ORDER BY id DESC LIMIT 1",
                [rollout],
                |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)),
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        row.map(|(id, evidence)| {
            serde_json::from_str(&evidence)
                .map_err(|e| self.json(OP, format!("evidence of analysis {id}"), e))
        })
        .transpose()
    }

    // ----- actuator intents -----

    /// Records the outcome of an intent: `Ok(())` marks it done, `Err(reason)` failed. Fails if
    /// the intent does not exist or is no longer pending.
    pub fn complete_intent(
        &self,
        id: i64,
        outcome: Result<(), &str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const OP: &str = "complete intent";
        let (status, error) = match outcome {
            Ok(()) => (IntentStatus::Done, None),
            Err(reason) => (IntentStatus::Failed, Some(reason)),
        };
        self.write(OP, |tx| {
            let changed = exec(
                tx,
                "UPDATE intents SET status = ?2, error = ?3, completed_at = ?4
                     WHERE id = ?1 AND status = 'pending'",
                params![id, status.as_str(), error, millis(at)],
            )
            .map_err(self.sql(OP))?;
            if changed == 1 {
                return Ok(());
            }
            let status = one(
                tx,
                "SELECT status FROM intents WHERE id = ?1",
                [id],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(self.sql(OP))?;
            Err(self.not_pending(OP, "actuator intent", id, status))
        })
    }

    fn not_pending(
        &self,
        op: &'static str,
        what: &'static str,
        id: i64,
        status: Option<String>,
    ) -> StoreError {
        let path = self.path().to_path_buf();
        match status {
            Some(status) => StoreError::NotPending {
                op,
                path,
                what,
                id,
                status,
            },
            None => StoreError::NotFound { op, path, what, id },
        }
    }

    /// Intents recorded but never completed, oldest first: after a crash, the runner re-drives
    /// each with its idempotency key, then completes it.
    pub fn pending_intents(&self) -> Result<Vec<Intent>, StoreError> {
        self.intents_where(
            "list pending intents",
            "status = 'pending' ORDER BY id",
            &[],
        )
    }

    /// The intent with this idempotency key, if any.
    pub fn intent_by_key(&self, key: &str) -> Result<Option<Intent>, StoreError> {
        Ok(self
            .intents_where("load intent", "idempotency_key = ?1", &[&key])?
            .pop())
    }

    fn intents_where(
        &self,
        op: &'static str,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Intent>, StoreError> {
        let sql = format!(
            "SELECT id, rollout, idempotency_key, weight, previous_weight, status, error,
                 created_at, completed_at
             FROM intents WHERE {filter}"
        );
        let rows = self.read(op, |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(self.sql(op))?;
            stmt.query_map(args, |row| {
                Ok(IntentRow {
                    id: row.get(0)?,
                    rollout: row.get(1)?,
                    idempotency_key: row.get(2)?,
                    weight: row.get(3)?,
                    previous_weight: row.get(4)?,
                    status: row.get(5)?,
                    error: row.get(6)?,
                    created_at: row.get(7)?,
                    completed_at: row.get(8)?,
                })
            })
            .map_err(self.sql(op))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql(op))
        })?;
        rows.into_iter()
            .map(|row| {
                Ok(Intent {
                    id: row.id,
                    weight: self.weight(op, "intents.weight", row.weight)?,
                    previous_weight: self.weight(
                        op,
                        "intents.previous_weight",
                        row.previous_weight,
                    )?,
                    status: IntentStatus::parse(&row.status).ok_or_else(|| {
                        self.bad(
                            op,
                            "intents.status",
                            format!("unknown status `{}`", row.status),
                        )
                    })?,
                    created_at: self.time(op, "intents.created_at", row.created_at)?,
                    completed_at: self.opt_time(op, "intents.completed_at", row.completed_at)?,
                    rollout: row.rollout,
                    idempotency_key: row.idempotency_key,
                    error: row.error,
                })
            })
            .collect()
    }

    // ----- notification outbox -----

    /// Enqueues one notification outside a step (due at `now`). Returns `None`, writing nothing,
    /// if its dedupe key is already in the outbox.
    pub fn enqueue(
        &self,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        const OP: &str = "enqueue notification";
        let message =
            MessageJob::new(message).map_err(|e| self.json(OP, "notification payload", e))?;
        self.write(OP, |tx| {
            self.inner.insert_message(tx, OP, &message, millis(now))
        })
    }

    /// Claims up to `limit` pending messages due at `now` (earliest first): each gets one more
    /// attempt counted and is hidden from other claims for `lease`, after which it is due again
    /// unless marked sent, rescheduled or failed (so a sender that dies mid-send loses nothing).
    pub fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        const OP: &str = "claim due notifications";
        let now_ms = millis(now);
        let lease_end = now_ms.saturating_add(millis_of(lease));
        let rows = self.write(OP, |tx| {
            let rows = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM outbox
                         WHERE status = 'pending' AND next_attempt_at <= ?1
                         ORDER BY next_attempt_at, id LIMIT ?2"
                    ))
                    .map_err(self.sql(OP))?;
                stmt.query_map(
                    params![now_ms, limit.min(MAX_PAGE) as i64],
                    MessageRow::from_row,
                )
                .map_err(self.sql(OP))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.sql(OP))?
            };
            let mut claimed = Vec::with_capacity(rows.len());
            for mut row in rows {
                exec(
                    tx,
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2 WHERE id = ?1",
                    params![row.id, lease_end],
                )
                .map_err(self.sql(OP))?;
                row.attempts += 1;
                row.next_attempt_at = lease_end;
                claimed.push(row);
            }
            Ok(claimed)
        })?;
        rows.into_iter()
            .map(|row| self.message_from(OP, row))
            .collect()
    }

    /// Marks a claimed message as sent. Fails if it is not pending, so a message is never
    /// recorded as sent twice.
    pub fn mark_sent(&self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.update_pending_message(
            "mark notification sent",
            id,
            "status = 'sent', sent_at = ?2, last_error = NULL",
            &[&millis(at)],
        )
    }

    /// Records a failed attempt that may succeed later: the message is due again at
    /// `next_attempt_at` (the caller computes the backoff).
    pub fn reschedule(
        &self,
        id: i64,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.update_pending_message(
            "reschedule notification",
            id,
            "next_attempt_at = ?2, last_error = ?3",
            &[&millis(next_attempt_at), &error],
        )
    }

    /// Gives up on a message (a permanent error, or too many attempts).
    pub fn mark_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.update_pending_message(
            "mark notification failed",
            id,
            "status = 'failed', last_error = ?2",
            &[&error],
        )
    }

    fn update_pending_message(
        &self,
        op: &'static str,
        id: i64,
        set: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<(), StoreError> {
        let sql = format!("UPDATE outbox SET {set} WHERE id = ?1 AND status = 'pending'");
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&id];
        all.extend_from_slice(args);
        self.write(op, |tx| {
            let changed = exec(tx, &sql, all.as_slice()).map_err(self.sql(op))?;
            if changed == 1 {
                return Ok(());
            }
            let status = one(tx, "SELECT status FROM outbox WHERE id = ?1", [id], |row| {
                row.get::<_, String>(0)
            })
            .optional()
            .map_err(self.sql(op))?;
            Err(self.not_pending(op, "notification", id, status))
        })
    }

    /// The message with this dedupe key, if any.
    pub fn message_by_dedupe_key(&self, key: &str) -> Result<Option<Message>, StoreError> {
        const OP: &str = "load notification";
        let row = self.read(OP, |conn| {
            one(
                conn,
                &format!("SELECT {MESSAGE_COLUMNS} FROM outbox WHERE dedupe_key = ?1"),
                [key],
                MessageRow::from_row,
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        row.map(|row| self.message_from(OP, row)).transpose()
    }

    /// How many messages are pending, sent and failed.
    pub fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        const OP: &str = "count notifications";
        self.read(OP, |conn| {
            one(
                conn,
                "SELECT count(*) FILTER (WHERE status = 'pending'),
                        count(*) FILTER (WHERE status = 'sent'),
                        count(*) FILTER (WHERE status = 'failed')
                 FROM outbox",
                [],
                |row| {
                    Ok(OutboxCounts {
                        pending: row.get(0)?,
                        sent: row.get(1)?,
                        failed: row.get(2)?,
                    })
                },
            )
            .map_err(self.sql(OP))
        })
    }

    fn message_from(&self, op: &'static str, row: MessageRow) -> Result<Message, StoreError> {
        Ok(Message {
            id: row.id,
            payload: serde_json::from_str(&row.payload)
                .map_err(|e| self.json(op, format!("payload of notification {}", row.id), e))?,
            status: MessageStatus::parse(&row.status).ok_or_else(|| {
                self.bad(
                    op,
                    "outbox.status",
                    format!("unknown status `{}`", row.status),
                )
            })?,
            attempts: u32::try_from(row.attempts).map_err(|_| {
                self.bad(
                    op,
                    "outbox.attempts",
                    format!("{} is not a count", row.attempts),
                )
            })?,
            next_attempt_at: self.time(op, "outbox.next_attempt_at", row.next_attempt_at)?,
            created_at: self.time(op, "outbox.created_at", row.created_at)?,
            sent_at: self.opt_time(op, "outbox.sent_at", row.sent_at)?,
            receiver: row.receiver,
            dedupe_key: row.dedupe_key,
            event: row.event,
            severity: row.severity,
            last_error: row.last_error,
        })
    }

    // ----- daemon flags -----

    /// Sets a flag to a JSON value, replacing any previous one.
    pub fn set_flag<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const OP: &str = "set flag";
        let value =
            serde_json::to_string(value).map_err(|e| self.json(OP, format!("flag `{key}`"), e))?;
        self.write(OP, |tx| {
            exec(
                tx,
                "INSERT INTO flags (key, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at",
                params![key, value, millis(at)],
            )
            .map_err(self.sql(OP))?;
            Ok(())
        })
    }

    /// A flag's value, if set.
    pub fn flag<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Flag<T>>, StoreError> {
        const OP: &str = "read flag";
        let row = self.read(OP, |conn| {
            one(
                conn,
                "SELECT value, updated_at FROM flags WHERE key = ?1",
                [key],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()
            .map_err(self.sql(OP))
        })?;
        row.map(|(value, updated_at)| {
            Ok(Flag {
                key: key.to_string(),
                value: serde_json::from_str(&value)
                    .map_err(|e| self.json(OP, format!("flag `{key}`"), e))?,
                updated_at: self.time(OP, "flags.updated_at", updated_at)?,
            })
        })
        .transpose()
    }

    /// Removes a flag; returns whether it was set.
    pub fn clear_flag(&self, key: &str) -> Result<bool, StoreError> {
        const OP: &str = "clear flag";
        self.write(OP, |tx| {
            exec(tx, "DELETE FROM flags WHERE key = ?1", [key])
                .map(|n| n == 1)
                .map_err(self.sql(OP))
        })
    }
}

/// SQLite page cache per connection, in KiB as a negative number (SQLite's convention).
const CACHE_KIB: i64 = -512;

/// The batch side of the group commit, run on its thread (which holds no [`Store`], so that
/// dropping the last handle stops it).
impl Inner {
    fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::sql(op, self.path(), source)
    }

    /// Fails, writing nothing, once the database at the path is not the one open or a storage
    /// failure was seen. `conn` is the writer's, held by the caller.
    fn verify(&self, conn: &Connection) -> Result<(), StoreError> {
        self.check_on(conn)
            .map_err(|fault| StoreError::Failed { fault })
    }

    /// [`Store::check`] with the writer connection held, to save the open history with.
    fn check_on(&self, conn: &Connection) -> Result<(), Fault> {
        self.health.check(|| self.rescue(conn))
    }

    /// Saves the history still open (the database file was deleted or replaced at its path)
    /// to a new database next to it, with `VACUUM INTO`; where, or `None` if it could not.
    fn rescue(&self, conn: &Connection) -> Option<PathBuf> {
        let copy = health::rescue_path(&self.path, Utc::now().timestamp_millis());
        let saved = copy
            .to_str()
            .ok_or_else(|| "the path is not UTF-8".to_string())
            .and_then(|to| {
                conn.execute("VACUUM INTO ?1", [to])
                    .map_err(|e| e.to_string())
            });
        match saved {
            Ok(_) => {
                tracing::error!(database = %self.path.display(), copy = %copy.display(), "The state database is not at its path any more; saved the history still open.");
                Some(copy)
            }
            Err(e) => {
                tracing::error!(database = %self.path.display(), copy = %copy.display(), error = %e, "The state database is not at its path any more, and the history still open could not be saved.");
                None
            }
        }
    }

    /// Writes a batch of steps in one `IMMEDIATE` transaction, each inside its own savepoint so
    /// that a failing step is rolled back alone, and commits it (one fsync). If the transaction
    /// cannot begin or commit, every step of the batch gets the error.
    fn commit_batch(
        &self,
        jobs: &mut dyn Iterator<Item = StepJob>,
    ) -> Vec<Result<Committed, StoreError>> {
        // The connection first: steps handed in while another write holds it join this batch.
        let mut conn = lock(&self.writer);
        let jobs: Vec<StepJob> = jobs.collect();
        if let Err(fault) = self.check_on(&conn) {
            return jobs
                .iter()
                .map(|_| {
                    Err(StoreError::Failed {
                        fault: fault.clone(),
                    })
                })
                .collect();
        }
        let results = self.write_batch(&mut conn, jobs);
        for result in &results {
            if let Err(e) = result {
                self.health.note(e);
            }
        }
        results
    }

    /// [`Inner::commit_batch`]'s writing, on the writer connection.
    fn write_batch(
        &self,
        conn: &mut Connection,
        jobs: Vec<StepJob>,
    ) -> Vec<Result<Committed, StoreError>> {
        const OP: &str = COMMIT_OP;
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return jobs.iter().map(|_| Err(self.copy_sql(OP, &e))).collect(),
        };
        let single = jobs.len() == 1;
        let mut results: Vec<Result<Committed, StoreError>> = jobs
            .iter()
            .map(|job| {
                if single {
                    // Alone in its transaction: a failure rolls the transaction back below.
                    return self.insert_step(&tx, job);
                }
                tx.prepare_cached("SAVEPOINT step")
                    .and_then(|mut s| s.execute([]))
                    .map_err(self.sql(OP))?;
                let result = self.insert_step(&tx, job);
                let end = if result.is_ok() {
                    "RELEASE step"
                } else {
                    "ROLLBACK TO step"
                };
                tx.prepare_cached(end)
                    .and_then(|mut s| s.execute([]))
                    .map_err(self.sql(OP))?;
                if result.is_err() {
                    tx.prepare_cached("RELEASE step")
                        .and_then(|mut s| s.execute([]))
                        .map_err(self.sql(OP))?;
                }
                result
            })
            .collect();
        if single && results[0].is_err() {
            // Dropping the transaction rolls it back.
            return results;
        }
        if let Err(e) = tx.commit() {
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(self.copy_sql(OP, &e));
                }
            }
        }
        // Steps rolled back, or a commit that failed, leave nothing to checkpoint.
        let committed = results.iter().filter(|r| r.is_ok()).count();
        self.checkpoints.wrote(committed as u64);
        results
    }

    /// One SQLite error for each of several callers (a batch's failed commit).
    fn copy_sql(&self, op: &'static str, e: &rusqlite::Error) -> StoreError {
        let copy = match e {
            rusqlite::Error::SqliteFailure(code, message) => {
                rusqlite::Error::SqliteFailure(*code, message.clone())
            }
            other => rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(other.to_string()),
            ),
        };
        StoreError::sql(op, self.path(), copy)
    }

    /// Writes one step's rows on `tx` (the caller handles transaction and savepoint).
    fn insert_step(&self, tx: &Connection, job: &StepJob) -> Result<Committed, StoreError> {
        const OP: &str = COMMIT_OP;
        let at = job.at;
        tx.prepare_cached(
            "INSERT INTO rollouts (name, state, rule_fingerprint, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET state = excluded.state,
                 rule_fingerprint = excluded.rule_fingerprint, updated_at = excluded.updated_at",
        )
        .and_then(|mut s| s.execute(params![job.rollout, job.state, job.rule_fingerprint, at]))
        .map_err(self.sql(OP))?;

        if let Some(started) = &job.run_started {
            self.insert_run(tx, OP, job, started)?;
        }

        let mut audit_ids = Vec::with_capacity(job.audit.len());
        if !job.audit.is_empty() {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO audit (rollout, at, action, previous_weight, new_weight, reason,
                         triggered_by, run)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(self.sql(OP))?;
            for entry in &job.audit {
                let id = stmt
                    .insert(params![
                        job.rollout,
                        at,
                        entry.action,
                        entry.previous_weight,
                        entry.new_weight,
                        entry.reason,
                        entry.triggered_by,
                        job.run
                    ])
                    .map_err(self.sql(OP))?;
                audit_ids.push(id);
            }
        }

        let intent_id = match &job.intent {
            Some(intent) => Some(self.insert_intent(tx, OP, &job.rollout, intent, at)?),
            None => None,
        };

        let mut outbox_ids = Vec::with_capacity(job.outbox.len());
        for message in &job.outbox {
            outbox_ids.push(self.insert_message(tx, OP, message, at)?);
        }

        let analysis_id = match &job.analysis {
            Some(analysis) => Some(
                tx.prepare_cached(
                    "INSERT INTO analyses (rollout, at, outcome, score, evidence, run)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.insert(params![
                        job.rollout,
                        at,
                        analysis.outcome,
                        analysis.score,
                        analysis.evidence,
                        job.run
                    ])
                })
                .map_err(self.sql(OP))?,
            ),
            None => None,
        };

        Ok(Committed {
            audit_ids,
            intent_id,
            outbox_ids,
            analysis_id,
        })
    }

    fn insert_intent(
        &self,
        tx: &Connection,
        op: &'static str,
        rollout: &str,
        intent: &NewIntent,
        at: i64,
    ) -> Result<i64, StoreError> {
        let existing = tx
            .prepare_cached("SELECT id FROM intents WHERE idempotency_key = ?1")
            .and_then(|mut s| {
                s.query_row([&intent.idempotency_key], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map_err(self.sql(op))?;
        if existing.is_some() {
            return Err(StoreError::DuplicateIntent {
                op,
                path: self.path().to_path_buf(),
                key: intent.idempotency_key.clone(),
            });
        }
        tx.prepare_cached(
            "INSERT INTO intents (rollout, idempotency_key, weight, previous_weight, status,
                 created_at)
             VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
        )
        .and_then(|mut s| {
            s.insert(params![
                rollout,
                intent.idempotency_key,
                intent.weight,
                intent.previous_weight,
                at
            ])
        })
        .map_err(self.sql(op))
    }

    fn insert_message(
        &self,
        tx: &Connection,
        op: &'static str,
        message: &MessageJob,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO outbox (receiver, dedupe_key, event, severity, payload, status,
                     attempts, next_attempt_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)
                 ON CONFLICT (dedupe_key) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    message.receiver,
                    message.dedupe_key,
                    message.event,
                    message.severity,
                    message.payload,
                    at
                ])
            })
            .map_err(self.sql(op))?;
        Ok((inserted == 1).then(|| tx.last_insert_rowid()))
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    const OP: &str = "open";
    let err = |e| StoreError::sql(OP, path, e);
    let conn = connect(path, OpenFlags::default()).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    // The first statement to read the header: a file that is not a database fails here.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::BadValue {
            op: OP,
            path: path.to_path_buf(),
            what: "journal mode",
            detail: format!("SQLite kept `{mode}` instead of switching to WAL"),
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(err)?;
    // Writes append recent rows; a small page cache is enough and keeps the daemon's memory low
    // (SQLite's default is 2 MB per connection).
    conn.pragma_update(None, "cache_size", CACHE_KIB)
        .map_err(err)?;
    // The checkpoint thread copies the WAL back; a commit checkpoints only if it falls far behind.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
        .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A commit runs a checkpoint itself once the WAL holds this many pages (SQLite's default is
/// 1000): a backstop, as the checkpoint thread normally keeps the WAL far shorter.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Prepared statements kept per connection (every statement of the store fits).
const STATEMENT_CACHE: usize = 48;

/// The checkpoint thread's connection: read-write, syncing like the writer, never
/// auto-checkpointing on its own.
fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    const OP: &str = "open for checkpoints";
    let err = |e| StoreError::sql(OP, path, e);
    let conn = connect(path, OpenFlags::default()).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    // A checkpoint copies frames from the WAL to the database file; it reads hardly any page
    // through the cache, so the cache stays at its minimum.
    conn.pragma_update(None, "cache_size", CHECKPOINT_CACHE_KIB)
        .map_err(err)?;
    Ok(conn)
}

/// The checkpoint connection's page cache, KiB (negative: a size, as SQLite reads it).
const CHECKPOINT_CACHE_KIB: i64 = -64;

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    const OP: &str = "open for reading";
    let err = |e| StoreError::sql(OP, path, e);
    // Read-write, but refusing writes: see the module's documentation.
    let conn = connect(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    conn.pragma_update(None, "query_only", true).map_err(err)?;
    conn.pragma_update(None, "cache_size", CACHE_KIB)
        .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Runs a statement through the connection's cache of prepared statements.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// [`Connection::query_row`] through the cache of prepared statements.
fn one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(params, f)
}

/// The id bound of a page query: rows strictly older than the cursor.
fn after(cursor: Option<Cursor>) -> i64 {
    cursor.map_or(i64::MAX, |c| c.0)
}

/// Cuts a `limit + 1` row result to `limit`, with a cursor if the extra row shows there is more.
fn paginate<T>(mut items: Vec<T>, limit: usize, id: impl Fn(&T) -> i64) -> Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(|last| Cursor(id(last)))
    } else {
        None
    };
    Page { items, next }
}

struct RolloutRow {
    name: String,
    state: String,
    rule_fingerprint: String,
    updated_at: i64,
}

impl RolloutRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RolloutRow {
            name: row.get(0)?,
            state: row.get(1)?,
            rule_fingerprint: row.get(2)?,
            updated_at: row.get(3)?,
        })
    }
}

struct AuditRow {
    id: i64,
    run: u32,
    rollout: String,
    at: i64,
    action: String,
    previous_weight: Option<i64>,
    new_weight: Option<i64>,
    reason: String,
    triggered_by: String,
}

struct IntentRow {
    id: i64,
    rollout: String,
    idempotency_key: String,
    weight: i64,
    previous_weight: i64,
    status: String,
    error: Option<String>,
    created_at: i64,
    completed_at: Option<i64>,
}

const MESSAGE_COLUMNS: &str = "id, receiver, dedupe_key, event, severity, payload, status, \
     attempts, next_attempt_at, last_error, created_at, sent_at";

struct MessageRow {
    id: i64,
    receiver: String,
    dedupe_key: String,
    event: String,
    severity: String,
    payload: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
}

impl MessageRow {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(MessageRow {
            id: row.get(0)?,
            receiver: row.get(1)?,
            dedupe_key: row.get(2)?,
            event: row.get(3)?,
            severity: row.get(4)?,
            payload: row.get(5)?,
            status: row.get(6)?,
            attempts: row.get(7)?,
            next_attempt_at: row.get(8)?,
            last_error: row.get(9)?,
            created_at: row.get(10)?,
            sent_at: row.get(11)?,
        })
    }
}

/// The operation named in errors of [`Store::commit_step`].
const COMMIT_OP: &str = "commit step";

/// A step ready to write: owned and already serialised, so that any thread can write it.
#[derive(Debug)]
struct StepJob {
    rollout: String,
    state: String,
    rule_fingerprint: String,
    at: i64,
    run: u32,
    run_started: Option<NewRun>,
    audit: Vec<NewAudit>,
    intent: Option<NewIntent>,
    outbox: Vec<MessageJob>,
    analysis: Option<AnalysisJob>,
}

#[derive(Debug)]
struct AnalysisJob {
    outcome: String,
    /// `None` for no score or NaN.
    score: Option<f64>,
    evidence: String,
}

/// A notification with its payload serialised.
#[derive(Debug)]
struct MessageJob {
    receiver: String,
    dedupe_key: String,
    event: String,
    severity: String,
    payload: String,
}

impl MessageJob {
    fn new(message: &NewMessage) -> Result<MessageJob, serde_json::Error> {
        Ok(MessageJob {
            receiver: message.receiver.clone(),
            dedupe_key: message.dedupe_key.clone(),
            event: message.event.clone(),
            severity: message.severity.clone(),
            payload: serde_json::to_string(&message.payload)?,
        })
    }
}
