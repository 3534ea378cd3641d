//! Whether the config points at files other users can read: the token file (`server.token_file`)
//! and the state directory (`state_dir`). The daemon logs each finding at start and `canaryd
//! check` prints it as a warning; neither refuses to run, since the operator may mean it. The
//! decision ([`token_file`], [`state_dir`]) is pure, on a file's mode; [`warnings`] reads the
//! modes. It changes no mode: what the store creates it creates private (`store::private`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Config;
use crate::rules::{Problem, Warning};

/// What is wrong with a token file of `mode`, if anything. `group_is_ours`: the file's group is
/// the daemon's own, the usual way (`root:canaryd 0640`) to let the daemon's user read a file
/// it does not own, so reading by that group is not an exposure. Writing by anyone else is.
pub fn token_file(mode: u32, group_is_ours: bool) -> Option<String> {
    let mode = mode & 0o777;
    if mode & 0o022 != 0 {
        return Some(format!(
            "the token file can be changed by other users (mode {mode:04o}): they could make \
             themselves an admin; `chmod 600` it, owned by the user canaryd runs as"
        ));
    }
    let others_read = mode & 0o004 != 0 || (mode & 0o040 != 0 && !group_is_ours);
    others_read.then(|| {
        format!(
            "the token file is readable by other users (mode {mode:04o}): it says who holds \
             which role and lets anyone try tokens against its hashes; `chmod 600` it, owned by \
             the user canaryd runs as (or 640 with that user's group)"
        )
    })
}

/// What is wrong with a state directory of `mode`, if anything: any access by the group or
/// others (its database holds the audit trail, the evidence and the notifications' text).
pub fn state_dir(mode: u32) -> Option<String> {
    let mode = mode & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the state directory is open to other users (mode {mode:04o}): its database holds \
             the audit trail, the evidence and the notifications; `chmod 700` it (canaryd \
             creates it 0700)"
        )
    })
}

/// The warnings about `config`'s token file and state directory, as they are on disk now. A
/// file that does not exist (yet) is not warned about: the daemon creates the state directory
/// private, and a missing token file is an error elsewhere.
pub fn warnings(config: &Config) -> Vec<Warning> {
    let mut found = Vec::new();
    if let Some(path) = &config.server.token_file
        && let Ok(meta) = std::fs::metadata(path)
        && let Some(message) = token_file(meta.mode(), meta.gid() == own_group())
    {
        found.push(warning(path, message));
    }
    if let Ok(meta) = std::fs::metadata(&config.state_dir)
        && meta.is_dir()
        && let Some(message) = state_dir(meta.mode())
    {
        found.push(warning(&config.state_dir, message));
    }
    found
}

fn warning(path: &Path, message: String) -> Warning {
    Warning(Problem::file(path, message))
}

/// The daemon's effective group.
fn own_group() -> u32 {
    // SAFETY: getegid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::getegid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_files_others_can_read_or_change_are_found_by_mode() {
        // (mode, group is the daemon's, warned about, what the message says)
        let cases = [
            (0o600, false, None),
            (0o400, false, None),
            (0o640, true, None),
            (0o640, false, Some("readable by other users (mode 0640)")),
            (0o644, true, Some("readable by other users (mode 0644)")),
            (0o604, false, Some("readable")),
            (
                0o620,
                true,
                Some("can be changed by other users (mode 0620)"),
            ),
            (0o602, false, Some("can be changed")),
            (0o100_644, false, Some("(mode 0644)")),
        ];
        for (mode, ours, want) in cases {
            let got = token_file(mode, ours);
            match want {
                None => assert_eq!(got, None, "{mode:o}"),
                Some(text) => {
                    let got = got.unwrap_or_else(|| panic!("{mode:o} not warned about"));
                    assert!(got.contains(text), "{mode:o}: {got}");
                }
            }
        }
    }

    #[test]
    fn state_directories_open_to_anyone_else_are_found_by_mode() {
        for mode in [0o700, 0o500, 0o040_700] {
            assert_eq!(state_dir(mode), None, "{mode:o}");
        }
        for mode in [0o750, 0o710, 0o755, 0o701, 0o777] {
            let got = state_dir(mode).unwrap_or_else(|| panic!("{mode:o}"));
            assert!(
                got.contains(&format!("(mode {:04o})", mode & 0o777)),
                "{got}"
            );
        }
    }

    #[test]
    fn the_real_files_modes_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "").unwrap();
        let path = dir.path().join("canaryd.toml");
        std::fs::write(
            &path,
            format!(
                "state_dir = {state:?}\nrules_dir = {:?}\n[server]\ntoken_file = {tokens:?}\n",
                dir.path()
            ),
        )
        .unwrap();
        let config = super::super::load(&path).unwrap();
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&tokens, 0o600);
        assert!(warnings(&config).is_empty(), "no state directory yet");
        std::fs::create_dir(&state).unwrap();
        set(&state, 0o755);
        set(&tokens, 0o604);
        let found: Vec<String> = warnings(&config).iter().map(ToString::to_string).collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with(&format!("{}: warning: the token file", tokens.display())),
            "{found:?}"
        );
        assert!(
            found[1].starts_with(&format!(
                "{}: warning: the state directory",
                state.display()
            )),
            "{found:?}"
        );
        set(&state, 0o700);
        set(&tokens, 0o600);
        assert!(warnings(&config).is_empty());
    }
}
