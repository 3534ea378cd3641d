//! WAL checkpoints off the commit path: a background thread with its own connection copies the
//! write-ahead log back into the database file (a `PASSIVE` checkpoint, which never blocks the
//! writer nor readers), so that commits do not pay for it. It checkpoints once enough writes
//! are pending or the oldest has waited long enough ([`Policy`]): under load every half second,
//! as before, and at a few analyses a second every ten seconds instead of after every one (a
//! checkpoint syncs the database file, so checkpointing each commit cost as much CPU as the
//! commit itself). It owns that thread and its connection only; it decides nothing about what
//! is written.
//!
//! Durability does not depend on it: a commit is durable once its WAL frames are synced, and the
//! writer keeps SQLite's automatic checkpoint as a backstop ([`super::WAL_AUTOCHECKPOINT_PAGES`])
//! in case this thread falls behind or cannot run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// When the thread checkpoints.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// How often the thread looks for pending writes.
    pub poll: Duration,
    /// Checkpoint once this many writes are pending (a step counts one, and so does any other
    /// transaction; an analysis's step is about 20 kB: 256 of them are about 1,300 WAL pages,
    /// far below the writer's own backstop).
    pub writes: u64,
    /// ... or once the oldest pending write has waited this long.
    pub age: Duration,
}

impl Policy {
    /// Whether `pending` writes, the oldest seen `waited` ago, are due for a checkpoint.
    pub(super) fn due(&self, pending: u64, waited: Duration) -> bool {
        pending > 0 && (pending >= self.writes || waited >= self.age)
    }
}

/// The daemon's policy.
pub(super) const POLICY: Policy = Policy {
    poll: Duration::from_millis(500),
    writes: 256,
    age: Duration::from_secs(10),
};

/// The running checkpointer; dropping it stops the thread and waits for it.
#[derive(Debug)]
pub(super) struct Checkpointer {
    writes: Arc<AtomicU64>,
    /// Checkpoints run so far.
    rounds: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on `conn` (a read-write connection to the database). If the thread
    /// cannot be spawned, SQLite's automatic checkpoint does the work instead.
    pub(super) fn start(conn: Connection, path: &Path, policy: Policy) -> Checkpointer {
        let writes = Arc::new(AtomicU64::new(0));
        let rounds = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = mpsc::channel::<()>();
        let seen = Arc::clone(&writes);
        let ran = Arc::clone(&rounds);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("canaryd-checkpoint".to_string())
            .spawn(move || run(&conn, policy, &seen, &ran, &stopped, &shown));
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot start the WAL checkpoint thread; commits will checkpoint.");
                None
            }
        };
        Checkpointer {
            writes,
            rounds,
            stop: Some(stop),
            thread,
        }
    }

    /// Notes that `writes` writes (steps, or one other transaction that changed rows) were
    /// committed.
    pub(super) fn wrote(&self, writes: u64) {
        self.writes.fetch_add(writes, Ordering::Relaxed);
    }

    /// How many writes have been noted.
    #[cfg(test)]
    pub(super) fn noted(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// How many checkpoints the thread has run.
    #[cfg(test)]
    pub(super) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            tracing::debug!(
                checkpoints = self.rounds.load(Ordering::Relaxed),
                "The WAL checkpoint thread stopped."
            );
        }
    }
}

fn run(
    conn: &Connection,
    policy: Policy,
    writes: &AtomicU64,
    rounds: &AtomicU64,
    stop: &mpsc::Receiver<()>,
    path: &str,
) {
    let mut done = 0;
    // When this thread first saw the writes still pending.
    let mut pending_since: Option<Instant> = None;
    loop {
        match stop.recv_timeout(policy.poll) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = writes.load(Ordering::Relaxed);
        if now == done {
            continue;
        }
        let since = *pending_since.get_or_insert_with(Instant::now);
        if !policy.due(now - done, since.elapsed()) {
            continue;
        }
        done = now;
        pending_since = None;
        // Returns (busy, log frames, frames checkpointed); a busy or partial checkpoint is
        // finished by a later round.
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(0)
        });
        match result {
            Ok(_) => {
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(database = %path, error = %e, "A WAL checkpoint failed; the next one will retry.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_on_enough_writes_or_an_old_one_and_never_on_none() {
        let p = POLICY;
        assert!(!p.due(0, Duration::from_secs(3600)), "nothing pending");
        assert!(!p.due(1, Duration::from_secs(9)), "one write, fresh");
        assert!(p.due(1, Duration::from_secs(10)), "one write, old enough");
        assert!(!p.due(255, Duration::ZERO));
        assert!(p.due(256, Duration::ZERO), "enough writes at once");
    }

    /// A database with one table, opened as the store opens its writer and checkpointer, and a
    /// checkpointer on it polling every 5 ms.
    fn started(writes: u64, age: Duration) -> (tempfile::TempDir, Connection, Checkpointer) {
        let policy = Policy {
            poll: Duration::from_millis(5),
            writes,
            age,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = crate::store::open_writer(&path).unwrap();
        writer.execute("CREATE TABLE t (x INTEGER)", []).unwrap();
        let conn = crate::store::open_checkpointer(&path).unwrap();
        let checkpoints = Checkpointer::start(conn, &path, policy);
        (dir, writer, checkpoints)
    }

    fn write(writer: &Connection, checkpoints: &Checkpointer) {
        writer.execute("INSERT INTO t VALUES (1)", []).unwrap();
        checkpoints.wrote(1);
    }

    fn wait_for_rounds(checkpoints: &Checkpointer, rounds: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while checkpoints.rounds() < rounds {
            assert!(Instant::now() < deadline, "no checkpoint ran");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn writes_wait_for_the_count_then_are_checkpointed_into_the_database_file() {
        let (dir, writer, checkpoints) = started(4, Duration::from_secs(3600));
        for _ in 0..3 {
            write(&writer, &checkpoints);
        }
        // Many polls later, three writes are still fewer than four.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            checkpoints.rounds(),
            0,
            "checkpointed before the fourth write"
        );
        write(&writer, &checkpoints);
        wait_for_rounds(&checkpoints, 1);
        // The rows are in the database file itself: a copy of it alone, without its WAL, has them.
        let copy = dir.path().join("copy.db");
        std::fs::copy(dir.path().join("t.db"), &copy).unwrap();
        let rows: i64 = Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 4);
    }

    #[test]
    fn a_lone_write_is_checkpointed_once_it_is_old_enough() {
        let (_dir, writer, checkpoints) = started(1000, Duration::from_millis(50));
        write(&writer, &checkpoints);
        wait_for_rounds(&checkpoints, 1);
        // Nothing new: no further checkpoint.
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(checkpoints.rounds(), 1);
    }
}
