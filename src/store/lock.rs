//! The state directory's lock: one daemon per state. A daemon holds an exclusive `flock` on
//! `canaryd.lock` in the state directory for its whole life, with its pid written in the file, so
//! that a second `canaryd serve` on the same directory refuses to start and names the holder
//! instead of running two deciders on one history. The kernel drops the lock when the holder's
//! process ends however it ends (`kill -9` included), so a stale file never blocks a restart.
//! The file stays after the daemon stops, which also tells that a database was kept here: a
//! directory with the lock file but no database lost its history, and a daemon started on it
//! would begin every rollout again at its first stage wherever the world was left, so it
//! refuses ([`StoreError::Lost`]) until the database is put back or the operator removes the
//! lock file to start afresh on purpose. It owns that file only; the database itself is opened
//! by [`super::Store`].

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{DB_FILE, StoreError};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "canaryd.lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct StateLock {
    /// Kept open: the lock lives as long as this descriptor.
    _file: File,
    path: PathBuf,
}

/// Who holds a state directory's lock, as its lock file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder(pub Option<u32>);

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, "pid {pid}"),
            None => f.write_str("pid not recorded yet"),
        }
    }
}

impl StateLock {
    /// Takes the lock of `state_dir` (created if missing) without waiting, and records this
    /// process's pid in it. Fails with [`StoreError::Locked`], naming the holder, when another
    /// process (or another daemon in this one) holds it.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, StoreError> {
        super::private::create_dir(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(LOCK_FILE);
        let io = |source| StoreError::LockFile {
            path: path.clone(),
            source,
        };
        // Created 0600 whatever the umask (see `private`); then opened like any existing one.
        let existed = !super::private::create_file(&path).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: state_dir.to_path_buf(),
                    holder: holder(&mut file),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let db = state_dir.join(DB_FILE);
        if existed && !db.exists() {
            return Err(StoreError::Lost {
                db,
                lock: path.clone(),
                rescued: rescued_copies(state_dir),
            });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The copies of the history a daemon saved when its database was deleted under it, by name.
fn rescued_copies(state_dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("{DB_FILE}.rescued-");
    let mut found: Vec<PathBuf> = std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    found.sort();
    found
}

/// The pid the holder wrote (none if it has not written it yet, or the file is not ours).
fn holder(file: &mut File) -> Holder {
    let mut text = String::new();
    // At most a line: a pid is short, and the file is not trusted to be.
    let read = file.take(32).read_to_string(&mut text);
    Holder(read.ok().and_then(|_| text.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state).unwrap();
        std::fs::write(state.join(DB_FILE), b"db").unwrap();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            format!("{}\n", std::process::id())
        );
        let refused = StateLock::acquire(&state).unwrap_err();
        assert!(
            matches!(refused, StoreError::Locked { holder: Holder(Some(pid)), .. } if pid == std::process::id()),
            "{refused:?}"
        );
        let message = refused.to_string();
        assert!(
            message.contains(&format!(
                "{} is in use by another canaryd (pid {})",
                state.display(),
                std::process::id()
            )),
            "{message}"
        );
        drop(first);
        let again = StateLock::acquire(&state).unwrap();
        drop(again);
    }

    #[test]
    fn a_directory_that_lost_its_database_is_refused_until_it_is_put_back_or_the_lock_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A first start: no lock file, no database yet.
        let lock = StateLock::acquire(dir.path()).unwrap();
        std::fs::write(dir.path().join(DB_FILE), b"db").unwrap();
        drop(lock);
        // Restarts with the database there are fine.
        drop(StateLock::acquire(dir.path()).unwrap());

        std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
        let copy = dir.path().join("canaryd.db.rescued-1700000000000");
        std::fs::write(&copy, b"db").unwrap();
        let lost = StateLock::acquire(dir.path()).unwrap_err();
        let message = lost.to_string();
        assert!(
            matches!(lost, StoreError::Lost { ref rescued, .. } if rescued == std::slice::from_ref(&copy))
        );
        assert!(message.contains("is missing"), "{message}");
        assert!(message.contains(&copy.display().to_string()), "{message}");
        assert!(message.contains("delete"), "{message}");

        // Put back: it starts.
        std::fs::rename(&copy, dir.path().join(DB_FILE)).unwrap();
        drop(StateLock::acquire(dir.path()).unwrap());
        // Or afresh on purpose: the database and the lock file removed.
        std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        drop(StateLock::acquire(dir.path()).unwrap());
    }

    #[test]
    fn a_holder_that_wrote_no_pid_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "not a pid").unwrap();
        let file = File::open(dir.path().join(LOCK_FILE)).unwrap();
        file.lock().unwrap();
        let refused = StateLock::acquire(dir.path()).unwrap_err();
        assert!(
            refused.to_string().contains("(pid not recorded yet)"),
            "{refused}"
        );
    }
}
