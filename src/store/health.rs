//! The store's health: whether the database it has open is still the one at its path, and
//! whether SQLite has failed at the storage level. A database deleted or replaced under a running
//! daemon does not stop SQLite: it goes on writing to the open, now nameless, file, whose history
//! vanishes at the next start (which then begins every rollout again at its first stage). So the
//! store records the identity (device and inode) of the database file and its write-ahead log at
//! open, compares them with what the paths name before every write and when asked
//! ([`super::Store::check`]), and latches the first [`Fault`] it finds, or the first storage-level
//! SQLite error (I/O, disk full, read-only, corrupt): from then on every write fails with
//! [`super::StoreError::Failed`] without touching the file, until the process restarts. It decides
//! nothing else: the daemon reports the fault and stops acting.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rusqlite::ErrorCode;

use super::StoreError;

/// Why the store stopped writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("{file} was deleted while canaryd was running")]
    Deleted { file: PathBuf },
    #[error("{file} was replaced by another file while canaryd was running")]
    Replaced { file: PathBuf },
    #[error("{op} failed on the state database {path}: {detail}")]
    Storage {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },
}

impl Fault {
    /// What the operator should do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            Fault::Deleted { .. } | Fault::Replaced { .. } => {
                "put the database back (or restore a backup of it) and restart canaryd, which \
                 resumes from what the file holds"
            }
            Fault::Storage { .. } => {
                "fix the storage (free space, permissions, a read-only file system), then restart \
                 canaryd"
            }
        }
    }
}

/// One watched file: its path and the identity it had at open.
#[derive(Debug)]
struct Watched {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// The identities recorded at open and the latched fault.
#[derive(Debug)]
pub(super) struct Health {
    files: Vec<Watched>,
    fault: OnceLock<Fault>,
}

impl Health {
    /// Records the identity of the database file `db` and of its write-ahead log (when it
    /// exists; the store's connections keep it while open).
    pub(super) fn watch(db: &Path) -> Health {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let files = [db.to_path_buf(), PathBuf::from(wal)]
            .into_iter()
            .filter_map(|path| {
                let meta = std::fs::metadata(&path).ok()?;
                Some(Watched {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    path,
                })
            })
            .collect();
        Health {
            files,
            fault: OnceLock::new(),
        }
    }

    /// The latched fault, if any (no I/O).
    pub(super) fn fault(&self) -> Option<&Fault> {
        self.fault.get()
    }

    /// The latched fault, or else whether every watched path still names the file opened.
    /// Uses `stat` only: opening and closing the database file here would drop SQLite's POSIX
    /// locks on it.
    pub(super) fn check(&self) -> Result<(), Fault> {
        if let Some(fault) = self.fault() {
            return Err(fault.clone());
        }
        for file in &self.files {
            let found = match std::fs::metadata(&file.path) {
                Ok(meta) if (meta.dev(), meta.ino()) == (file.dev, file.ino) => continue,
                Ok(_) => Fault::Replaced {
                    file: file.path.clone(),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Fault::Deleted {
                    file: file.path.clone(),
                },
                Err(e) => Fault::Storage {
                    op: "check the database file",
                    path: file.path.clone(),
                    detail: e.to_string(),
                },
            };
            return Err(self.latch(found));
        }
        Ok(())
    }

    /// Latches `fault` unless one is already latched; returns the latched one.
    pub(super) fn latch(&self, fault: Fault) -> Fault {
        self.fault.get_or_init(|| fault).clone()
    }

    /// Latches the storage failure `error` stands for, if it is one.
    pub(super) fn note(&self, error: &StoreError) {
        if let Some(fault) = storage_fault(error) {
            self.latch(fault);
        }
    }
}

impl StoreError {
    /// Whether this is a failure of the storage itself (the database deleted, replaced, failing
    /// I/O, full, read-only or corrupt), as opposed to a busy database, a rejected value or a bug.
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, StoreError::Failed { .. }) || storage_fault(self).is_some()
    }
}

/// The [`Fault`] a store error stands for when it is a failure of the storage itself (I/O, disk
/// full, read-only or unopenable file, corruption), as opposed to a busy database, a rejected
/// value or a bug.
pub(super) fn storage_fault(error: &StoreError) -> Option<Fault> {
    let (op, path, source) = match error {
        StoreError::Corrupt { op, path, source } => (*op, path, source),
        StoreError::Sql { op, path, source } => match source.sqlite_error_code() {
            Some(
                ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase,
            ) => (*op, path, source),
            _ => return None,
        },
        _ => return None,
    };
    Some(Fault::Storage {
        op,
        path: path.clone(),
        detail: source.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &Path) -> PathBuf {
        let path = dir.join("canaryd.db");
        std::fs::write(&path, b"x").unwrap();
        path
    }

    #[test]
    fn a_deleted_or_replaced_file_is_a_fault_that_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        let health = Health::watch(&path);
        assert_eq!(health.check(), Ok(()));
        std::fs::remove_file(&path).unwrap();
        let deleted = Fault::Deleted { file: path.clone() };
        assert_eq!(health.check(), Err(deleted.clone()));
        // A new file at the path does not make it good again: the open one is not that file.
        std::fs::write(&path, b"y").unwrap();
        assert_eq!(health.check(), Err(deleted.clone()));
        assert_eq!(health.fault(), Some(&deleted));

        let health = Health::watch(&path);
        std::fs::rename(&path, dir.path().join("aside")).unwrap();
        std::fs::write(&path, b"z").unwrap();
        assert_eq!(health.check(), Err(Fault::Replaced { file: path }));
    }

    #[test]
    fn the_write_ahead_log_is_watched_too_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        let wal = dir.path().join("canaryd.db-wal");
        std::fs::write(&wal, b"w").unwrap();
        let health = Health::watch(&path);
        std::fs::remove_file(&wal).unwrap();
        assert_eq!(health.check(), Err(Fault::Deleted { file: wal }));
    }

    #[test]
    fn only_storage_level_errors_are_faults() {
        let path = PathBuf::from("/state/canaryd.db");
        let sql = |code: i32| StoreError::Sql {
            op: "commit step",
            path: path.clone(),
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        };
        for code in [
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_CANTOPEN,
        ] {
            assert!(
                matches!(
                    storage_fault(&sql(code)),
                    Some(Fault::Storage {
                        op: "commit step",
                        ..
                    })
                ),
                "{code}"
            );
        }
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_CONSTRAINT,
        ] {
            assert_eq!(storage_fault(&sql(code)), None, "{code}");
        }
        let duplicate = StoreError::DuplicateIntent {
            op: "commit step",
            path,
            key: "k".into(),
        };
        assert_eq!(storage_fault(&duplicate), None);
    }
}
