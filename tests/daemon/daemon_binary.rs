//! The real `canaryd` binary: a kill -9 in the middle of a stage and a restart resume the same
//! rollout with no audit record lost and no duplicate or contradicting actuation (counted by a
//! webhook actuator this test serves); `CANARYD_EMERGENCY_STOP=true` at start holds every
//! rollout at 0%; a config with an unknown key or a bad override fails with where and what; a
//! second daemon on the same state directory refuses to start, naming the first one's pid; a
//! WAL index file (`canaryd.db-shm`) cut short and made unwritable under the running daemon does
//! not kill it (it used to die of SIGBUS, with no log line); a database deleted under it is
//! logged at error level and shown to systemd (`STATUS=NOT READY: ...`); a reason with a
//! newline, given over the API or the CLI, cannot forge a line of the daemon's log.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::api_support::daemon_support::*;
use crate::prometheus_support::{Prometheus, free_port};
use canaryd::rollout::{Phase, RolloutState};
use canaryd::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_canaryd");

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(config: &Path, port: u16, emergency: bool) -> Daemon {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("CANARYD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CANARYD_EMERGENCY_STOP")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if emergency {
        cmd.env("CANARYD_EMERGENCY_STOP", "true");
    }
    Daemon(cmd.spawn().unwrap())
}

async fn wait_ready(base: &str) {
    wait_for("/readyz", Duration::from_secs(10), || async {
        match reqwest::get(format!("{base}/readyz")).await {
            Ok(r) if r.status() == 200 => Some(()),
            _ => None,
        }
    })
    .await;
}

fn audit(store: &Store, rollout: &str) -> Vec<(i64, String, Option<u8>)> {
    let page = store.audit_page(rollout, None, 1000).unwrap();
    page.items
        .into_iter()
        .rev()
        .map(|a| (a.id, a.action, a.new_weight))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_stage_resumes_without_loss_or_duplicate_actuation() {
    let scrape = serve_metrics(&[("base", 0.1), ("good", 0.1)]).await;
    let (hook, received) = serve_webhook().await;
    let prom = tokio::task::spawn_blocking(move || {
        let p = Prometheus::builder()
            .scrape("app", scrape.to_string())
            .start();
        assert!(p.wait_for_data("latency_seconds", Duration::from_secs(15)));
        p
    })
    .await
    .unwrap();
    let dir = temp_dir("crash");
    let config = write_config(&dir, &prom.url(), &format!("http://{hook}/weights"));
    write_rule(&dir, "crashy", "good", "webhook", "3s");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    let mut daemon = start(&config, port, false);
    wait_ready(&base).await;
    // Kill the moment the second stage's weight reaches the webhook: mid-stage, possibly
    // between the actuator call and the intent's completion.
    wait_for("the 50% change", Duration::from_secs(20), || async {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.weight == 50)
            .then_some(())
    })
    .await;
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();

    let store = Store::open(&dir.join("state")).unwrap();
    let before = audit(&store, "crashy");
    let state: RolloutState = store.rollout("crashy").unwrap().unwrap().state;
    assert_eq!(state.phase, Phase::Progressing { stage: 1 });
    assert_eq!(state.weight, 50);
    drop(store);

    let mut daemon = start(&config, port, false);
    wait_ready(&base).await;
    wait_for(
        "the rollout to succeed after the restart",
        Duration::from_secs(20),
        || async {
            rollout(&base, "crashy")
                .await
                .filter(|r| r.phase == "succeeded" && r.weight == 100)
        },
    )
    .await;
    // The database is the daemon's alone while it runs: stop it to read it.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();

    let store = Store::open(&dir.join("state")).unwrap();
    let after = audit(&store, "crashy");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "audit records were lost or changed"
    );
    assert!(after.iter().any(|(_, a, _)| a == "succeeded"));
    assert!(store.pending_intents().unwrap().is_empty());

    // Every distinct change was sent under its own key; a key seen twice is a re-drive of the
    // same change, never a new one.
    let seen = received.lock().unwrap().clone();
    let mut distinct: Vec<(String, u8, u8)> = Vec::new();
    for r in &seen {
        match distinct.iter().find(|(k, _, _)| *k == r.idempotency_key) {
            Some((_, prev, w)) => assert_eq!(
                (*prev, *w),
                (r.previous_weight, r.weight),
                "a key reused for another change"
            ),
            None => distinct.push((r.idempotency_key.clone(), r.previous_weight, r.weight)),
        }
    }
    let weights: Vec<(u8, u8)> = distinct.iter().map(|(_, p, w)| (*p, *w)).collect();
    assert_eq!(weights, [(0, 10), (10, 50), (50, 100)], "{seen:?}");
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_stop_from_the_environment_holds_every_rollout_at_zero() {
    let (hook, received) = serve_webhook().await;
    let dir = temp_dir("envstop");
    // No Prometheus at all: the daemon starts anyway.
    let config = write_config(
        &dir,
        &format!("http://127.0.0.1:{}", free_port()),
        &format!("http://{hook}/weights"),
    );
    write_rule(&dir, "frozen", "good", "webhook", "1h");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _daemon = start(&config, port, true);
    wait_ready(&base).await;
    // The stop is engaged before the daemon listens; the bound is on a process that may be
    // slow on a loaded machine, not a timing (the canary's weight is checked below).
    let r = wait_for("the emergency stop", Duration::from_secs(10), || async {
        rollout(&base, "frozen")
            .await
            .filter(|r| r.phase == "emergency-stopped")
    })
    .await;
    assert_eq!(r.weight, 0);
    assert!(
        received.lock().unwrap().iter().all(|c| c.weight == 0),
        "the canary got traffic"
    );
    let status: serde_json::Value = reqwest::get(format!("{base}/v1/emergency-stop"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["active"], true);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Wait at most `within` for `child` to exit; kill it and fail with `what` if it does not.
fn exit_within(mut child: Child, within: Duration, what: &str) -> std::process::Output {
    let deadline = std::time::Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            let log = String::from_utf8_lossy(&out.stderr);
            let start = log.floor_char_boundary(log.len().saturating_sub(2000));
            panic!(
                "{what} still ran after {within:?}; its log ends:\n{}",
                &log[start..]
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_directory_refuses_naming_the_first() {
    let (hook, _received) = serve_webhook().await;
    let dir = temp_dir("twice");
    let config = write_config(
        &dir,
        &format!("http://127.0.0.1:{}", free_port()),
        &format!("http://{hook}/weights"),
    );
    write_rule(&dir, "solo", "good", "webhook", "1h");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let first = start(&config, port, false);
    wait_ready(&base).await;

    let second_port = free_port();
    let second = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "CANARYD__SERVER__LISTEN",
            format!("127.0.0.1:{second_port}"),
        )
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CANARYD_EMERGENCY_STOP")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        exit_within(second, Duration::from_secs(20), "the second daemon")
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let state = dir.join("state");
    assert!(
        stderr.contains(&format!("{} is in use", state.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", first.0.id())),
        "{stderr}"
    );
    // The first one is untouched: still ready, still holding its rollout.
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(rollout(&base, "solo").await.is_some());
    drop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_index_file_cut_short_and_unwritable_under_the_daemon_does_not_kill_it() {
    use std::os::unix::fs::PermissionsExt;
    let scrape = serve_metrics(&[("base", 0.1), ("good", 0.1)]).await;
    let (hook, received) = serve_webhook().await;
    let prom = tokio::task::spawn_blocking(move || {
        let p = Prometheus::builder()
            .scrape("app", scrape.to_string())
            .start();
        assert!(p.wait_for_data("latency_seconds", Duration::from_secs(15)));
        p
    })
    .await
    .unwrap();
    let dir = temp_dir("shm");
    let config = write_config(&dir, &prom.url(), &format!("http://{hook}/weights"));
    write_rule(&dir, "mapped", "good", "webhook", "2s");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut daemon = start(&config, port, false);
    wait_ready(&base).await;
    wait_for("the 10% change", Duration::from_secs(20), || async {
        (!received.lock().unwrap().is_empty()).then_some(())
    })
    .await;

    // What a truncating tool, a full or read-only file system under the WAL index, or a chmod
    // leaves: the file empty and not writable.
    let shm = dir.join("state/canaryd.db-shm");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&shm)
        .unwrap();
    std::fs::set_permissions(&shm, std::fs::Permissions::from_mode(0o000)).unwrap();

    let outcome = wait_for(
        "the rollout to succeed (or the daemon to die)",
        Duration::from_secs(30),
        || {
            let exited = daemon.0.try_wait().unwrap();
            let base = base.clone();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                rollout(&base, "mapped")
                    .await
                    .filter(|r| r.phase == "succeeded" && r.weight == 100)
                    .map(Ok)
            }
        },
    )
    .await;
    if let Err(status) = outcome {
        use std::os::unix::process::ExitStatusExt;
        panic!(
            "the daemon died ({status}) when its WAL index file was cut short (signal {:?})",
            status.signal()
        );
    }
    let ready = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    let weights: Vec<u8> = received.lock().unwrap().iter().map(|r| r.weight).collect();
    assert_eq!(weights, [10, 50, 100]);
    drop(daemon);
    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_deleted_under_the_binary_is_logged_as_an_error_and_shown_to_systemd() {
    let (hook, received) = serve_webhook().await;
    let dir = temp_dir("deleted-bin");
    let config = write_config(
        &dir,
        &format!("http://127.0.0.1:{}", free_port()),
        &format!("http://{hook}/weights"),
    );
    write_rule(&dir, "gone", "good", "webhook", "1h");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let socket_path = dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = dir.join("canaryd.log");
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CANARYD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("CANARYD_EMERGENCY_STOP")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _daemon = Daemon(child);
    wait_ready(&base).await;
    wait_for("the 10% change", Duration::from_secs(10), || async {
        (!received.lock().unwrap().is_empty()).then_some(())
    })
    .await;

    for name in ["canaryd.db", "canaryd.db-wal", "canaryd.db-shm"] {
        let _ = std::fs::remove_file(dir.join("state").join(name));
    }
    // systemd is told (STATUS=, what `systemctl status` shows), within the check interval.
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while std::time::Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                if text.contains("STATUS=NOT READY") {
                    return Some(text);
                }
            }
        }
        None
    })
    .await
    .unwrap()
    .expect("systemd was not told the daemon is not ready");
    assert!(
        status.contains("was deleted while canaryd was running"),
        "{status}"
    );
    let readyz = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 503);
    // And the log has it at error level.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("was deleted while canaryd was running")),
        "{logged}"
    );
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "acted after the deletion"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_whose_database_was_deleted_while_stopped_is_refused_not_restarted() {
    let (hook, received) = serve_webhook().await;
    let dir = temp_dir("lost");
    let config = write_config(
        &dir,
        &format!("http://127.0.0.1:{}", free_port()),
        &format!("http://{hook}/weights"),
    );
    write_rule(&dir, "moved-on", "good", "webhook", "1h");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let daemon = start(&config, port, false);
    wait_ready(&base).await;
    wait_for("the 10% change", Duration::from_secs(10), || async {
        (!received.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    drop(daemon);
    // The history goes while the daemon is down; the traffic stays where it was left.
    for name in ["canaryd.db", "canaryd.db-wal", "canaryd.db-shm"] {
        let _ = std::fs::remove_file(dir.join("state").join(name));
    }

    let again = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CANARYD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CANARYD_EMERGENCY_STOP")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        exit_within(
            again,
            Duration::from_secs(20),
            "the daemon without its database",
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("canaryd.db is missing"), "{stderr}");
    assert!(stderr.contains("canaryd.lock"), "{stderr}");
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "a rollout was started again from its first stage"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_config_with_an_unknown_key_fails_naming_file_line_and_column() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/daemon/unknown-key.toml");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:7:1: error:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("listen_adress"), "{stderr}");
}

#[test]
fn environment_overrides_apply_and_bad_ones_are_named() {
    let dir = temp_dir("envcfg");
    let config = write_config(&dir, "http://127.0.0.1:9090", "http://127.0.0.1:9/weights");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CANARYD__SCHEDULER__BACKEND_ERROR_LIMT", "3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("CANARYD__SCHEDULER__BACKEND_ERROR_LIMT"),
        "{stderr}"
    );
    // A good override: the state directory moves where the environment says.
    let moved = dir.join("elsewhere");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CANARYD__STATE_DIR", &moved)
        .env("CANARYD__RULES_DIR", dir.join("missing-rules"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "no rules dir: the daemon must refuse to start"
    );
    assert!(
        moved.join("canaryd.db").exists(),
        "the state dir override was not applied"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing-rules"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reason is free text from whoever gives a command (the API's body, the CLI's `--reason`);
/// one with a newline must not start a line of its own in the log, where it would read as an
/// entry the daemon wrote (and journald would keep it as one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reason_with_a_newline_cannot_forge_a_log_line() {
    const FAKE: &str = "2026-01-01T00:00:00Z INFO fake line";
    let dir = temp_dir("forged-log");
    let config = write_config(
        &dir,
        &format!("http://127.0.0.1:{}", free_port()),
        "http://127.0.0.1:9/weights",
    );
    add_tokens(&dir, &config, &[("alice", "admin", "alice-token-0123")], "");
    let token_file = dir.join("alice-token");
    std::fs::write(&token_file, "alice-token-0123").unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.join("canaryd.log");
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CANARYD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CANARYD_EMERGENCY_STOP")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    wait_ready(&base).await;

    // Over the API: the emergency stop's reason is logged when it engages and when it clears.
    let client = reqwest::Client::new();
    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let body = serde_json::json!({ "reason": format!("incident\n{FAKE}\r\u{1b}[2K") });
        let resp = client
            .request(method.clone(), format!("{base}/v1/emergency-stop"))
            .bearer_auth("alice-token-0123")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{method}: {}",
            resp.text().await.unwrap()
        );
    }
    // And through the CLI's --reason.
    let out = tokio::process::Command::new(BIN)
        .args(["emergency-stop", "--url", &base, "--token-file"])
        .arg(&token_file)
        .args(["--reason", &format!("cli\n{FAKE}")])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the CLI's stop in the log",
        Duration::from_secs(10),
        || async {
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            (logged.matches("EMERGENCY STOP").count() >= 2).then_some(())
        },
    )
    .await;
    drop(daemon);

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logged.lines().any(|l| l.starts_with(FAKE)),
        "a forged line:\n{logged}"
    );
    assert!(
        !logged.contains('\r') && !logged.contains('\u{1b}'),
        "{logged:?}"
    );
    // The reasons are there, escaped, on the lines that logged them.
    for reason in [
        "incident\\n2026-01-01T00:00:00Z INFO fake line\\r\\u{1b}[2K",
        "cli\\n2026",
    ] {
        assert!(logged.contains(reason), "{reason} not in:\n{logged}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The permission bits of `path`.
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Start `canaryd serve` under `umask`, its stderr to `log`.
fn start_with_umask(config: &Path, port: u16, umask: &str, log: &Path) -> Daemon {
    let child = Command::new("sh")
        .args([
            "-c",
            &format!("umask {umask} && exec \"$0\" serve --config \"$1\""),
        ])
        .arg(BIN)
        .arg(config)
        .env("CANARYD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CANARYD_EMERGENCY_STOP")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Daemon(child)
}

/// Outside systemd (no `UMask=`, no `StateDirectoryMode=`), the daemon still keeps its state to
/// its user: the state directory it creates is 0700 and the files it creates in it 0600, under
/// the loosest umask. A token file or state directory others can read is warned about at start
/// and by `canaryd check`, which still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_is_private_under_any_umask_and_exposed_files_are_warned_about() {
    let dir = temp_dir("private");
    let config = write_config(
        &dir,
        &format!("http://127.0.0.1:{}", free_port()),
        "http://127.0.0.1:9/weights",
    );
    add_tokens(&dir, &config, &[("alice", "admin", "alice-token-0123")], "");
    let tokens = dir.join("tokens");
    let state = dir.join("state");
    chmod(&tokens, 0o644);
    assert!(!state.exists());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.join("first.log");
    let daemon = start_with_umask(&config, port, "000", &log);
    wait_ready(&base).await;
    assert_eq!(
        format!("{:o}", mode_of(&state)),
        "700",
        "the state directory"
    );
    // Every file in it (no `-shm`: the store keeps the write-ahead log's index in memory).
    let mut files: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    for file in ["canaryd.db", "canaryd.db-wal", "canaryd.lock"] {
        assert!(files.iter().any(|f| f == file), "{file} not in {files:?}");
    }
    for file in &files {
        assert_eq!(format!("{:o}", mode_of(&state.join(file))), "600", "{file}");
    }
    drop(daemon);
    let logged = std::fs::read_to_string(&log).unwrap();
    let token_warning = format!("{}", tokens.display());
    assert!(
        logged
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&token_warning) && l.contains("0644")),
        "{logged}"
    );
    assert!(
        !logged.contains(&format!("{} ", state.display())),
        "{logged}"
    );

    // A state directory opened up by hand is warned about too, by `check` and at start.
    chmod(&state, 0o755);
    let check = |config: &Path| {
        Command::new(BIN)
            .args(["check", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    let out = check(&config);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for (path, mode) in [(&tokens, "0644"), (&state, "0755")] {
        assert!(
            stdout.lines().any(
                |l| l.starts_with(&format!("{}: warning:", path.display())) && l.contains(mode)
            ),
            "{}: {stdout}",
            path.display()
        );
    }
    assert!(stdout.contains("2 warnings"), "{stdout}");
    let log = dir.join("second.log");
    let daemon = start_with_umask(&config, port, "022", &log);
    wait_ready(&base).await;
    drop(daemon);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("WARN")
            && l.contains(&state.display().to_string())
            && l.contains("0755")),
        "{logged}"
    );

    // Put right, nothing is said.
    chmod(&state, 0o700);
    chmod(&tokens, 0o600);
    let out = check(&config);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!stdout.contains("warning"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
