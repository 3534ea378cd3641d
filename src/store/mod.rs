//! canaryd's durable store: one SQLite database, `canaryd.db` in the state directory, holding
//! each rollout's state and its history (analyses, audit), the actuator intents and the
//! notification outbox with its incidents, and the daemon's flags. It owns the schema, its migrations and every SQL
//! statement; it must not decide anything (the state machine does) nor talk to the outside world
//! (the runner and the notifiers do): it records what they decided, atomically.
//!
//! # Parts
//! This file holds the [`Store`] handle: opening the connections, the read and write transactions
//! every part runs in, and the store's health check. Each table has its own file, each adding
//! methods to `Store`: `steps` (the `rollouts` table, [`Store::commit_step`] and the group commit's
//! batch), `runs`, `history` (reading `audit` and `analyses`), `intents`, `outbox`, `incidents`,
//! `flags` and `kept` (the answers a stage's analyses keep). Beside them: `offload` (the async
//! façade, [`Store::call`]), `records` (the plain values handed in and out), `error`
//! ([`StoreError`]), `schema` (migrations), `retention` (pruning old history, the incremental
//! vacuum and the database's size), `group` (the group-commit queue), `checkpoint`, `health`,
//! `lock` and `private` (the state directory created 0700 and the files in it 0600, whatever the
//! umask).
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
//! the kernel, and a dead process cannot take them back (`tests/edges/store_crash.rs` checks this
//! with real SIGKILLs). Against power loss or a kernel crash, `NORMAL` is not enough: it syncs the WAL
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
//! [`Store`] is synchronous, cheap to clone, `Send + Sync`: async callers go through
//! [`Store::call`] (`offload`), which runs a closure over the store on tokio's blocking pool and
//! turns a failed task into [`StoreError::Task`], except steps, which they hand to
//! [`Store::submit_step`] and await without holding a thread. Everything else in the store is
//! free of any runtime (tests and tools use it directly). [`ReadOnly`] is the store through its
//! queries only, for the parts that must not write. Writes go through one connection behind a mutex, each in an `IMMEDIATE`
//! transaction; reads (the HTTP API, `/metrics`) use a second, read-only connection behind its
//! own mutex, so thanks to WAL they see the last committed data without waiting for a writer's
//! fsync.

mod checkpoint;
mod error;
mod flags;
mod group;
mod health;
mod history;
mod incidents;
mod intents;
mod kept;
mod lock;
mod offload;
mod outbox;
mod private;
mod records;
mod retention;
mod runs;
mod schema;
mod steps;

#[cfg(test)]
mod incident_tests;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use error::StoreError;
pub use health::Fault;
pub use lock::{Holder, LOCK_FILE, StateLock};
pub use offload::ReadOnly;
pub use records::{
    Analysis, AuditEntry, BadCursor, Committed, Cursor, Flag, IncidentStep, Intent, IntentStatus,
    KeptAnswer, Message, MessageIncident, MessageStatus, NewAnalysis, NewAudit, NewIntent,
    NewMessage, NewRun, OpenIncident, OutboxCounts, Page, RunRecord, Step, StoredRollout,
};
pub use retention::{Pruned, Retention, StoreSize};
pub use schema::LATEST_VERSION;
use steps::{COMMIT_OP, StepJob};

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
    /// This handle's process generation: the outbox leases it takes carry it, so the next
    /// process can tell leases of a process that is gone (see `outbox`).
    generation: i64,
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
        private::create_dir(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        // A new database is created 0600 here, not by SQLite (0644 less the umask); its
        // write-ahead log takes its mode.
        private::create_file(&path).map_err(|source| StoreError::CreateFile {
            path: path.clone(),
            source,
        })?;
        Self::open_file(&path, schema::MIGRATIONS)
    }

    fn open_file(path: &Path, migrations: &[&str]) -> Result<Store, StoreError> {
        let mut writer = open_writer(path)?;
        schema::migrate(&mut writer, path, migrations)?;
        schema::incremental_vacuum(&writer, path)?;
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
            generation: outbox::new_generation(),
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
}

/// SQLite page cache per connection, in KiB as a negative number (SQLite's convention).
const CACHE_KIB: i64 = -512;

/// What the writer's side shares with the store's writes: the database's path, errors and the
/// health check (the batch itself is in `steps`).
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
        // `VACUUM INTO` fills an empty file as it is, so the copy is 0600 like the database.
        if let Err(e) = private::create_file(&copy) {
            tracing::warn!(copy = %copy.display(), error = %e, "Cannot create the rescue copy 0600; SQLite creates it.");
        }
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
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    const OP: &str = "open";
    let err = |e| StoreError::sql(OP, path, e);
    let conn = connect(path, OpenFlags::default()).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    // Before anything is written: a new database keeps its freed pages for
    // `incremental_vacuum` from its first page (an older one is converted after migrations).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(err)?;
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
