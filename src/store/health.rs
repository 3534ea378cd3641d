//! The store's health: whether the database it has open is still the one at its path, and
//! whether SQLite has failed at the storage level. A database deleted or replaced under a running
//! daemon does not stop SQLite: it goes on writing to the open, now nameless, file, whose history
//! vanishes at the next start (which then begins every rollout again at its first stage). So the
//! store records the identity (device and inode) of the database file and its write-ahead log at
//! open, compares them with what the paths name before every write and when asked
//! ([`super::Store::check`]), and latches the first [`Fault`] it finds, or the first storage-level
//! SQLite error (I/O, disk full, read-only, corrupt): from then on every write fails with
//! [`super::StoreError::Failed`] without touching the file, until the process restarts. When the
//! file was deleted or replaced, the history the store still has open is saved first (a
//! `VACUUM INTO` next to it, see [`rescue_path`]) so the operator can put it back even without a
//! backup. It decides nothing else: the daemon reports the fault and stops acting.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rusqlite::ErrorCode;

use super::StoreError;

/// Why the store stopped writing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("{} was deleted while canaryd was running", file.display())]
    Deleted {
        file: PathBuf,
        /// Where the history the store had open was saved, if it could be.
        rescued: Option<PathBuf>,
    },
    #[error("{} was replaced by another file while canaryd was running", file.display())]
    Replaced {
        file: PathBuf,
        rescued: Option<PathBuf>,
    },
    #[error("{op} failed on the state database {path}: {detail}")]
    Storage {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },
}

impl Fault {
    /// What the operator should do about it.
    pub fn advice(&self) -> String {
        match self {
            Fault::Deleted { file, rescued } | Fault::Replaced { file, rescued } => match rescued {
                Some(copy) => format!(
                    "canaryd saved the history it had open to {}: move that file to {} (or \
                     restore a backup) and restart canaryd, which resumes from it",
                    copy.display(),
                    file.display()
                ),
                None => "put the database back (or restore a backup of it) and restart canaryd, \
                         which resumes from what the file holds"
                    .to_string(),
            },
            Fault::Storage { .. } => "fix the storage (free space, permissions, a read-only file \
                                      system), then restart canaryd"
                .to_string(),
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
    /// locks on it. The first time a file is found deleted or replaced, `rescue` is asked to save
    /// the open history and say where.
    pub(super) fn check(&self, rescue: impl FnOnce() -> Option<PathBuf>) -> Result<(), Fault> {
        if let Some(fault) = self.fault() {
            return Err(fault.clone());
        }
        let Some(found) = self.mismatch() else {
            return Ok(());
        };
        Err(self
            .fault
            .get_or_init(|| match found {
                Fault::Deleted { file, .. } => Fault::Deleted {
                    file,
                    rescued: rescue(),
                },
                Fault::Replaced { file, .. } => Fault::Replaced {
                    file,
                    rescued: rescue(),
                },
                other => other,
            })
            .clone())
    }

    /// The first watched path that no longer names the file opened (nothing latched, nothing
    /// rescued).
    pub(super) fn mismatch(&self) -> Option<Fault> {
        self.files
            .iter()
            .find_map(|file| match std::fs::metadata(&file.path) {
                Ok(meta) if (meta.dev(), meta.ino()) == (file.dev, file.ino) => None,
                Ok(_) => Some(Fault::Replaced {
                    file: file.path.clone(),
                    rescued: None,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Fault::Deleted {
                    file: file.path.clone(),
                    rescued: None,
                }),
                Err(e) => Some(Fault::Storage {
                    op: "check the database file",
                    path: file.path.clone(),
                    detail: e.to_string(),
                }),
            })
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

/// Where the history still open is saved when the database file at `db` was deleted or
/// replaced: `canaryd.db.rescued-<unix ms>` next to it.
pub(super) fn rescue_path(db: &Path, at_millis: i64) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(format!(".rescued-{at_millis}"));
    db.with_file_name(name)
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
        let copy = dir.path().join("copy");
        assert_eq!(health.check(|| unreachable!()), Ok(()));
        std::fs::remove_file(&path).unwrap();
        let deleted = Fault::Deleted {
            file: path.clone(),
            rescued: Some(copy.clone()),
        };
        assert_eq!(health.check(|| Some(copy.clone())), Err(deleted.clone()));
        // A new file at the path does not make it good again: the open one is not that file.
        // Nor is anything rescued twice.
        std::fs::write(&path, b"y").unwrap();
        assert_eq!(health.check(|| unreachable!()), Err(deleted.clone()));
        assert_eq!(health.fault(), Some(&deleted));
        assert!(deleted.advice().contains("saved the history it had open"));

        let health = Health::watch(&path);
        std::fs::rename(&path, dir.path().join("aside")).unwrap();
        std::fs::write(&path, b"z").unwrap();
        let replaced = Fault::Replaced {
            file: path,
            rescued: None,
        };
        assert_eq!(health.check(|| None), Err(replaced.clone()));
        assert!(replaced.advice().contains("put the database back"));
    }

    #[test]
    fn the_write_ahead_log_is_watched_too_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = db(dir.path());
        let wal = dir.path().join("canaryd.db-wal");
        std::fs::write(&wal, b"w").unwrap();
        let health = Health::watch(&path);
        std::fs::remove_file(&wal).unwrap();
        assert_eq!(
            health.check(|| None),
            Err(Fault::Deleted {
                file: wal,
                rescued: None
            })
        );
    }

    #[test]
    fn the_rescued_copy_is_named_after_the_database_and_the_time() {
        assert_eq!(
            rescue_path(Path::new("/var/lib/canaryd/canaryd.db"), 1_700_000_000_123),
            PathBuf::from("/var/lib/canaryd/canaryd.db.rescued-1700000000123")
        );
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
