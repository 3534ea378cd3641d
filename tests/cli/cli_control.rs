//! The real `canaryd` binary's control commands against the daemon embedded in-process:
//! `status`, `compare`'s table, `pause --reason` (exit 0, the state changes, the token's name
//! in the history), a refused command (exit 1 with the daemon's message), an unreachable daemon
//! (exit 4), `--output json`, and `token new` lines the daemon accepts.

use crate::api_support;

use std::path::Path;
use std::process::Command;

use api_support::{ALICE, GRAF, start, wait_for_analysis};

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

fn token_file(dir: &Path, name: &str, token: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_reads_commands_and_reports_refusals_with_exit_codes() {
    let d = start("cli", &[("web", "steady", "1h"), ("bad", "bad", "1h")], "").await;
    let url = d.base.as_str();
    let alice = token_file(&d.dir, "alice.token", ALICE);
    let graf = token_file(&d.dir, "graf.token", GRAF);

    // status: every rollout, then one with its plan.
    let all = canaryd(&["status", "--url", url], &[]).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(all.stdout.starts_with("ROLLOUT"), "{}", all.stdout);
    assert!(
        all.stdout
            .lines()
            .any(|l| l.starts_with("web") && l.contains("progressing") && l.contains("10%")),
        "{}",
        all.stdout
    );
    let one = canaryd(&["status", "web"], &[("CANARYD_URL", url)]).await;
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(
        one.stdout.contains("web: progressing at 10% (stage 10%)"),
        "{}",
        one.stdout
    );
    assert!(
        one.stdout.contains("STAGE") && one.stdout.contains("PASSES"),
        "{}",
        one.stdout
    );
    assert!(
        one.stdout
            .lines()
            .any(|l| l.starts_with("10%") && l.contains("current")),
        "{}",
        one.stdout
    );

    // compare: the side-by-side table.
    wait_for_analysis(url, "bad").await;
    let cmp = canaryd(&["compare", "bad", "--url", url], &[]).await;
    assert_eq!(cmp.code, 0, "{}", cmp.stderr);
    let header = cmp
        .stdout
        .lines()
        .find(|l| l.starts_with("CHECK"))
        .unwrap_or_else(|| panic!("{}", cmp.stdout));
    let columns: Vec<&str> = header
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        columns,
        [
            "CHECK",
            "BASELINE (LEGACY)",
            "CANARY (NEW)",
            "EFFECT",
            "THRESHOLD",
            "BOUND",
            "VERDICT"
        ]
    );
    let row = cmp
        .stdout
        .lines()
        .find(|l| l.starts_with("latency"))
        .unwrap_or_else(|| panic!("{}", cmp.stdout));
    assert!(
        row.contains("0.1")
            && row.contains("0.9")
            && row.contains("threshold 0.5")
            && row.ends_with("fail"),
        "{row}"
    );

    // --output json parses and carries the API's fields.
    let json = canaryd(&["status", "web", "--url", url, "--output", "json"], &[]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["phase"], "progressing");
    assert_eq!(v["plan"].as_array().unwrap().len(), 3);

    // pause: exit 0, the state changes, alice is in the history.
    let pause = canaryd(
        &[
            "pause",
            "web",
            "--reason",
            "looking at p99",
            "--url",
            url,
            "--token-file",
            &alice,
        ],
        &[],
    )
    .await;
    assert_eq!(pause.code, 0, "{}", pause.stderr);
    assert!(
        pause.stdout.contains("web: paused at 10%"),
        "{}",
        pause.stdout
    );
    let after = canaryd(&["status", "web", "--url", url, "--output", "json"], &[]).await;
    let v: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert_eq!(v["phase"], "paused");
    let history = canaryd(&["history", "web", "--url", url, "--limit", "1"], &[]).await;
    assert_eq!(history.code, 0, "{}", history.stderr);
    let newest = history.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        newest.contains("paused") && newest.contains("alice") && newest.contains("looking at p99"),
        "{}",
        history.stdout
    );
    assert!(
        history.stdout.contains("(more: --cursor "),
        "{}",
        history.stdout
    );

    // Refusals: exit 1 with the daemon's message.
    let again = canaryd(
        &["approve", "web", "--reason", "ok"],
        &[("CANARYD_URL", url), ("CANARYD_TOKEN", ALICE)],
    )
    .await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("`approve` is not allowed while the rollout is paused"),
        "{}",
        again.stderr
    );
    let read_only = canaryd(
        &[
            "resume",
            "web",
            "--reason",
            "ok",
            "--url",
            url,
            "--token-file",
            &graf,
        ],
        &[],
    )
    .await;
    assert_eq!(read_only.code, 1);
    assert!(
        read_only.stderr.contains("read-only") && read_only.stderr.contains("403"),
        "{}",
        read_only.stderr
    );
    let no_token = canaryd(&["resume", "web", "--reason", "ok", "--url", url], &[]).await;
    assert_eq!(no_token.code, 1);
    assert!(no_token.stderr.contains("401"), "{}", no_token.stderr);
    let unknown = canaryd(&["status", "nope", "--url", url], &[]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("no rollout named `nope`"),
        "{}",
        unknown.stderr
    );

    // Usage errors exit 3: no reason, an unreadable token file.
    let usage = canaryd(&["pause", "web", "--url", url], &[]).await;
    assert_eq!(usage.code, 3, "{}", usage.stderr);
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
        ],
        &[],
    )
    .await;
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("/nonexistent/t"),
        "{}",
        missing.stderr
    );

    // The emergency stop and its clearing.
    let stop = canaryd(
        &[
            "emergency-stop",
            "--reason",
            "incident",
            "--url",
            url,
            "--token-file",
            &alice,
        ],
        &[],
    )
    .await;
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(stop.stdout.contains("engaged"), "{}", stop.stdout);
    let clear = canaryd(
        &[
            "emergency-stop",
            "--clear",
            "--reason",
            "over",
            "--url",
            url,
            "--token-file",
            &alice,
        ],
        &[],
    )
    .await;
    assert_eq!(clear.code, 0, "{}", clear.stderr);
    assert!(clear.stdout.contains("cleared"), "{}", clear.stdout);

    // A token made by `canaryd token new` works once its line is in the file.
    let made = canaryd(&["token", "new", "carol", "--role", "admin"], &[]).await;
    assert_eq!(made.code, 0, "{}", made.stderr);
    let token = made
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_string();
    let line = made.stdout.lines().last().unwrap().to_string();
    assert!(line.starts_with("carol admin "), "{line}");
    let tokens = d.dir.join("tokens");
    let mut text = std::fs::read_to_string(&tokens).unwrap();
    text.push_str(&format!("{line}\n"));
    std::fs::write(&tokens, text).unwrap();
    let carol = canaryd(
        &["resume", "web", "--reason", "carol checked"],
        &[("CANARYD_URL", url), ("CANARYD_TOKEN", &token)],
    )
    .await;
    assert_eq!(carol.code, 0, "{}", carol.stderr);
    assert!(carol.stdout.contains("by carol"), "{}", carol.stdout);

    let addr = d.addr;
    d.stop().await;
    // Nobody listens any more: exit 4.
    let gone = canaryd(&["status", "--url", &format!("http://{addr}")], &[]).await;
    assert_eq!(gone.code, 4, "{}", gone.stderr);
    assert!(
        gone.stderr.contains("cannot reach the daemon"),
        "{}",
        gone.stderr
    );
}
