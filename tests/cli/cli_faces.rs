//! What a person (or a script) reads from the control commands when something is wrong, run as
//! the real `canaryd` binary against the embedded daemon: a 401 says how to give a token,
//! `--output json` reports failures as JSON with the same exit codes, `emergency-stop --clear
//! --reason` records the reason, and every command the daemon prints for a phase parses (issue
//! 20, point 6).

use crate::api_support;

use std::process::Command;

use api_support::{ALICE, start};
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn canaryd(args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args(&args)
            .env_remove("CANARYD_URL")
            .env_remove("CANARYD_TOKEN")
            .envs(env)
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// The one JSON object a failed command printed on stderr.
fn json_error(run: &Run) -> Value {
    serde_json::from_str(run.stderr.trim())
        .unwrap_or_else(|e| panic!("stderr is not one JSON object ({e}):\n{}", run.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_401_says_how_to_give_a_token_and_json_output_gives_json_errors() {
    let d = start("cli-faces", &[("web", "steady", "1h")], "").await;
    let url = d.base.as_str();

    // No token: the refusal names both ways to give one.
    let no_token = canaryd(&["resume", "web", "--reason", "ok", "--url", url], &[]).await;
    assert_eq!(no_token.code, 1, "{}", no_token.stderr);
    for want in ["401", "no token was given", "--token-file", "CANARYD_TOKEN"] {
        assert!(
            no_token.stderr.contains(want),
            "{want}: {}",
            no_token.stderr
        );
    }
    let wrong = canaryd(
        &["resume", "web", "--reason", "ok", "--url", url],
        &[("CANARYD_TOKEN", "not-a-token")],
    )
    .await;
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains("not accepted") && wrong.stderr.contains("--token-file"),
        "{}",
        wrong.stderr
    );

    // --output json: a refusal is one JSON object on stderr, nothing on stdout, exit code kept.
    let unknown = canaryd(&["status", "nope", "--url", url, "--output", "json"], &[]).await;
    assert_eq!(unknown.code, 1);
    assert_eq!(unknown.stdout, "");
    let e = json_error(&unknown);
    assert_eq!(e["kind"], "refused");
    assert_eq!(e["status"], 404);
    assert_eq!(e["exit_code"], 1);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("no rollout named `nope`"),
        "{e}"
    );
    let unauthorized = canaryd(
        &[
            "pause",
            "web",
            "--reason",
            "x",
            "--url",
            url,
            "--output=json",
        ],
        &[],
    )
    .await;
    assert_eq!(unauthorized.code, 1);
    assert_eq!(json_error(&unauthorized)["status"], 401);
    // A usage error (no --reason) and an unreadable token file exit 3, as JSON.
    let usage = canaryd(&["pause", "web", "--url", url, "--output", "json"], &[]).await;
    assert_eq!(usage.code, 3, "{}", usage.stderr);
    let e = json_error(&usage);
    assert_eq!(
        (e["kind"].as_str(), e["exit_code"].as_u64()),
        (Some("usage"), Some(3))
    );
    assert!(e["error"].as_str().unwrap().contains("--reason"), "{e}");
    let missing = canaryd(
        &[
            "pause",
            "web",
            "--reason",
            "x",
            "--url",
            url,
            "--token-file",
            "/nonexistent/t",
            "--output",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(missing.code, 3);
    assert_eq!(json_error(&missing)["kind"], "usage");

    // --clear --reason: the reason is in the API's answer and in the rollout's history.
    let env = [("CANARYD_URL", url), ("CANARYD_TOKEN", ALICE)];
    let stop = canaryd(&["emergency-stop", "--reason", "drill"], &env).await;
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    api_support::daemon_support::wait_for(
        "the rollout to stop",
        std::time::Duration::from_secs(10),
        || async {
            let r = api_support::daemon_support::rollout(url, "web").await?;
            (r.phase == "emergency-stopped").then_some(())
        },
    )
    .await;
    let clear = canaryd(
        &[
            "emergency-stop",
            "--clear",
            "--reason",
            "all clear after INC-42",
            "--output",
            "json",
        ],
        &env,
    )
    .await;
    assert_eq!(clear.code, 0, "{}", clear.stderr);
    let answer: Value = serde_json::from_str(&clear.stdout).unwrap();
    assert_eq!(answer["reason"], "all clear after INC-42", "{answer}");
    let status: Value = reqwest::get(format!("{url}/v1/emergency-stop"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&status["cleared_by"], &status["cleared_reason"]),
        (
            &Value::from("alice"),
            &Value::from("all clear after INC-42")
        ),
        "{status}"
    );
    let history = api_support::daemon_support::wait_for(
        "the clearing in the history",
        std::time::Duration::from_secs(10),
        || async {
            let v: Value = reqwest::get(format!("{url}/v1/rollouts/web/history?limit=5"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let entries = v["entries"].as_array()?.clone();
            entries
                .iter()
                .any(|e| e["action"] == "emergency-cleared")
                .then_some(entries)
        },
    )
    .await;
    let cleared = history
        .iter()
        .find(|e| e["action"] == "emergency-cleared")
        .unwrap();
    assert!(
        cleared["reason"]
            .as_str()
            .unwrap()
            .contains("all clear after INC-42"),
        "{cleared}"
    );
    assert_eq!(cleared["triggered_by"], "alice");

    let addr = d.addr;
    d.stop().await;
    let gone = canaryd(
        &[
            "status",
            "--url",
            &format!("http://{addr}"),
            "--output",
            "json",
        ],
        &[],
    )
    .await;
    assert_eq!(gone.code, 4, "{}", gone.stderr);
    assert_eq!(json_error(&gone)["kind"], "unreachable");
}

/// The words of a printed command as a POSIX shell splits them (double quotes, `~` left as
/// is): enough for the commands canaryd prints.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '"' => (quoted, started) = (!quoted, true),
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

#[test]
fn every_command_printed_for_any_phase_parses_with_its_reason_and_token_file() {
    use canaryd::rollout::{Phase, ResumeTo};
    let phases = [
        Phase::Pending,
        Phase::Progressing { stage: 0 },
        Phase::WaitingApproval { stage: 0 },
        Phase::Paused {
            stage: 0,
            resume_to: ResumeTo::Progressing,
            reason: "x".into(),
        },
        Phase::RolledBack { reason: "x".into() },
        Phase::Succeeded,
        Phase::Aborted,
        Phase::EmergencyStopped {
            stage: 0,
            reason: "x".into(),
        },
    ];
    // The status line of alerts that are not about a decision (backend errors, restarts).
    for (url, token) in [(None, false), (Some("https://canary.example.com"), true)] {
        let line = canaryd::notify::command_line::status_line("shop-b", url, token);
        let parsed = <canaryd::cli::Cli as clap::Parser>::try_parse_from(shell_words(&line));
        assert!(parsed.is_ok(), "`{line}` does not parse: {parsed:?}");
    }
    for phase in phases {
        for command in canaryd::notify::notification::commands(&phase) {
            for url in [None, Some("https://canary.example.com/")] {
                let line = canaryd::notify::command_line::command_line(*command, "shop-b", url);
                let words = shell_words(&line);
                let parsed = <canaryd::cli::Cli as clap::Parser>::try_parse_from(&words);
                assert!(
                    parsed.is_ok(),
                    "{phase:?}: `{line}` does not parse: {parsed:?}"
                );
                assert!(
                    line.contains("--reason") && line.contains("--token-file"),
                    "{line}"
                );
            }
        }
    }
}

#[test]
fn judge_with_json_output_reports_a_bad_file_as_json_too() {
    let dir = std::env::temp_dir().join(format!("canaryd-judge-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let canary = dir.join("canary.txt");
    std::fs::write(&canary, "1\n2\nnot a number\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["judge", "--baseline"])
        .arg(&canary)
        .arg("--canary")
        .arg(&canary)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let run = Run {
        code: 3,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let e = json_error(&run);
    assert_eq!((run.code, run.stdout.as_str()), (3, ""));
    assert_eq!(e["kind"], "usage");
    assert!(
        e["error"].as_str().unwrap().contains("canary.txt"),
        "the file is named: {e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
