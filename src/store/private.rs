//! Files and directories only the daemon's user may open: the state directory is created 0700
//! and the files the store creates in it (the database, whose write-ahead log SQLite creates with
//! the database's mode, the lock file, a rescued copy) 0600. The mode is set with
//! `chmod` after creating, so the process's umask cannot loosen it (outside systemd nothing
//! sets `UMask=`). Something that already exists is left as it is: an operator's choice is
//! warned about at start (`config::exposure`), never changed.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The state directory's mode.
pub const DIR_MODE: u32 = 0o700;
/// The mode of the files the store creates.
pub const FILE_MODE: u32 = 0o600;

/// Create `dir` (and missing parents) 0700 if it does not exist.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Create `file` empty and 0600 if it does not exist; whether it was created.
pub fn create_file(file: &Path) -> io::Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(file)
    {
        Ok(created) => {
            created.set_permissions(Permissions::from_mode(FILE_MODE))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_dirs_and_files_are_private_and_existing_ones_are_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/state");
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("canaryd.db");
        assert!(create_file(&file).unwrap());
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, b"kept").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o640)).unwrap();
        assert!(!create_file(&file).unwrap());
        assert_eq!(
            (mode(&file), std::fs::read(&file).unwrap()),
            (0o640, b"kept".to_vec())
        );
        std::fs::set_permissions(&dir, Permissions::from_mode(0o750)).unwrap();
        create_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o750);
    }
}
