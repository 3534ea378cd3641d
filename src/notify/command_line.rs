//! The commands printed for people to act on a rollout (in notifications and on its status
//! page), complete so they run as printed: every option a command needs (`--reason`, the
//! token with `--token-file`, the daemon's `--url` when it has a public one) and none it does
//! not take (`emergency-stop --clear` names no rollout). It owns only the wording of a command
//! line; which commands make sense in a phase is [`super::notification::commands`]. Pure.

use crate::rollout::Command;

/// Where the printed commands read the operator's API token from: a file the operator keeps,
/// never the token itself (which would end up in mail archives and chat logs). The CLI's
/// `--token-file` takes it; `~` is expanded by the operator's shell.
pub const TOKEN_FILE: &str = "~/.config/canaryd/token";

/// The reason printed in a command: a placeholder the operator replaces, which still runs.
pub const REASON: &str = "...";

/// The command line that gives `command` to rollout `rollout`, e.g.
/// `canaryd resume web --url https://canaryd.example.com --token-file ~/.config/canaryd/token
/// --reason "..."`. `public_url` is `[server] public_url` (the daemon the pages are served
/// from); without it the CLI's default (`CANARYD_URL`, else loopback) applies.
pub fn command_line(command: Command, rollout: &str, public_url: Option<&str>) -> String {
    let verb = match command {
        Command::ClearEmergency => "emergency-stop --clear".to_string(),
        Command::EmergencyStop => "emergency-stop".to_string(),
        other => format!("{other} {}", shell_word(rollout)),
    };
    let url = public_url
        .map(|u| format!(" --url {}", shell_word(u.trim_end_matches('/'))))
        .unwrap_or_default();
    format!("canaryd {verb}{url} --token-file {TOKEN_FILE} --reason \"{REASON}\"")
}

/// The command line that shows rollout `rollout` (`canaryd status NAME`), for alerts that are
/// not about a decision. A read needs a token only with `[server] reads_need_token` (or from
/// another host), so the token file is printed only then: an operator without one can run it
/// on the daemon's host as printed.
pub fn status_line(rollout: &str, public_url: Option<&str>, reads_need_token: bool) -> String {
    let url = public_url
        .map(|u| format!(" --url {}", shell_word(u.trim_end_matches('/'))))
        .unwrap_or_default();
    let token = match reads_need_token {
        true => format!(" --token-file {TOKEN_FILE}"),
        false => String::new(),
    };
    format!("canaryd status {}{url}{token}", shell_word(rollout))
}

/// `text` as one shell word: as is when it holds only characters no shell treats specially,
/// else in single quotes (a single quote inside written as `'\''`).
pub fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_carries_its_url_token_file_and_reason() {
        assert_eq!(
            command_line(Command::Start, "shop-b", None),
            "canaryd start shop-b --token-file ~/.config/canaryd/token --reason \"...\""
        );
        assert_eq!(
            command_line(Command::Resume, "web", Some("https://canary.example.com/")),
            "canaryd resume web --url https://canary.example.com \
             --token-file ~/.config/canaryd/token --reason \"...\""
        );
    }

    #[test]
    fn a_status_line_carries_the_token_file_only_when_reads_need_one() {
        assert_eq!(status_line("web", None, false), "canaryd status web");
        assert_eq!(
            status_line("web", Some("https://c.example.com"), true),
            "canaryd status web --url https://c.example.com --token-file ~/.config/canaryd/token"
        );
    }

    #[test]
    fn clearing_the_emergency_stop_names_no_rollout() {
        assert_eq!(
            command_line(Command::ClearEmergency, "web", None),
            "canaryd emergency-stop --clear --token-file ~/.config/canaryd/token --reason \"...\""
        );
    }

    #[test]
    fn words_a_shell_would_split_or_expand_are_quoted() {
        assert_eq!(shell_word("web-1.2"), "web-1.2");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's$x"), "'it'\\''s$x'");
        assert_eq!(shell_word(""), "''");
    }
}
