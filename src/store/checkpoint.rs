//! WAL checkpoints off the commit path: a background thread with its own connection copies the
//! write-ahead log back into the database file (a `PASSIVE` checkpoint, which never blocks the
//! writer nor readers) a short while after writes, so that commits do not pay for it. It owns
//! that thread and its connection only; it decides nothing about what is written.
//!
//! Durability does not depend on it: a commit is durable once its WAL frames are synced, and the
//! writer keeps SQLite's automatic checkpoint as a backstop ([`super::WAL_AUTOCHECKPOINT_PAGES`])
//! in case this thread falls behind or cannot run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How often the thread looks for new writes to checkpoint.
const INTERVAL: Duration = Duration::from_millis(500);

/// The running checkpointer; dropping it stops the thread and waits for it.
#[derive(Debug)]
pub(super) struct Checkpointer {
    writes: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on `conn` (a read-write connection to the database). If the thread
    /// cannot be spawned, SQLite's automatic checkpoint does the work instead.
    pub(super) fn start(conn: Connection, path: &Path) -> Checkpointer {
        let writes = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = mpsc::channel::<()>();
        let seen = Arc::clone(&writes);
        let shown = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("canaryd-checkpoint".to_string())
            .spawn(move || run(&conn, &seen, &stopped, &shown));
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot start the WAL checkpoint thread; commits will checkpoint.");
                None
            }
        };
        Checkpointer {
            writes,
            stop: Some(stop),
            thread,
        }
    }

    /// Notes that a transaction was committed, so that the next round checkpoints.
    pub(super) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, writes: &AtomicU64, stop: &mpsc::Receiver<()>, path: &str) {
    let mut done = 0;
    loop {
        match stop.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = writes.load(Ordering::Relaxed);
        if now == done {
            continue;
        }
        done = now;
        // Returns (busy, log frames, frames checkpointed); a busy or partial checkpoint is
        // finished by a later round.
        let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            row.get::<_, i64>(0)
        });
        if let Err(e) = result {
            tracing::warn!(database = %path, error = %e, "A WAL checkpoint failed; the next one will retry.");
        }
    }
}
