//! Sequences that made the real daemon take a wrong action (issue 16), each run against the
//! daemon embedded in-process with an in-memory metric source the test can break, the real
//! store on disk and the real emergency-stop file: a restart during a backend outage must not
//! promote on the evidence gathered before it; an emergency stop must leave finished rollouts
//! where they are; a new canary version is a new run (from the rule file, or from a deploy
//! pipeline with the real `canaryd start --canary`), with its history apart. The embedded
//! daemons run on paused time with the test's clock; the one test that runs the real binary
//! (`kill -9`) runs on the machine's time, its waits bounded on events, not timed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::api_support::daemon_support::*;
use canaryd::judge::Point;
use canaryd::source::{MemorySource, MetricSource, Series, SourceError};
use canaryd::store::Store;

/// A rule with one absolute latency check and three stages; `first_min` is the first stage's
/// minimum duration.
fn rule(name: &str, canary: &str, first_min: &str) -> String {
    format!(
        r#"
[rollout]
name = "{name}"
team = "tests"
source = "prometheus"
actuator = "builtin"
rollback_to = "zero"

[analysis]
every = "1s"
warmup = "0s"
max_inconclusive = 100

[[stages]]
name = "10%"
weight = 10
min_duration = "{first_min}"
required_passes = 1

[[stages]]
name = "50%"
weight = 50
min_duration = "1s"
required_passes = 1

[[stages]]
name = "100%"
weight = 100
min_duration = "1s"
required_passes = 1

[sides]
label = "version"
baseline = "base"
canary = "{canary}"

[[checks]]
name = "latency"
kind = "absolute"
direction = "higher-is-worse"
threshold = 0.5
aggregate = "max"
query = 'latency_seconds{{ {{{{label}}}}="{{{{side}}}}" }}'
window = "5s"
min_samples = 2
critical = true
action = "rollback"
"#
    )
}

/// The switch and counter of a [`source`], and the queries it was asked.
#[derive(Clone, Default)]
struct Backend {
    down: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A source answering `latency_seconds{version="X"}` with 0.1 for every version but `bad`
/// (0.9), one point a second over the asked range, or failing while `down` is set.
fn source(backend: &Backend) -> Arc<dyn MetricSource> {
    let b = backend.clone();
    Arc::new(MemorySource::from_fn("prometheus", move |req| {
        b.asked.lock().unwrap().push(req.query().to_string());
        if b.down.load(Ordering::SeqCst) {
            b.failed.fetch_add(1, Ordering::SeqCst);
            return Err(SourceError::Http {
                source_name: "prometheus".into(),
                query: req.query().to_string(),
                status: 500,
                error_type: None,
                message: "backend down".into(),
            });
        }
        let value = if req.query().contains("\"bad\"") {
            0.9
        } else {
            0.1
        };
        let (start, end) = match req {
            canaryd::source::Request::Range { start, end, .. } => (*start, *end),
            canaryd::source::Request::Instant { at, .. } => (*at, *at),
        };
        let mut points = Vec::new();
        let mut t = start;
        while t <= end {
            points.push(Point {
                t: t.timestamp_millis() as f64 / 1000.0,
                v: value,
            });
            t += chrono::Duration::seconds(1);
        }
        Ok(vec![Series {
            labels: BTreeMap::new(),
            points,
        }])
    }))
}

struct Running {
    base: String,
    reload: tokio::sync::mpsc::Sender<()>,
    shutdown: tokio_util::sync::CancellationToken,
    running: tokio::task::JoinHandle<Result<(), canaryd::daemon::DaemonError>>,
}

async fn start(config: &Path, backend: &Backend) -> Running {
    let sources = BTreeMap::from([("prometheus".to_string(), source(backend))]);
    let e = embed_with_sources(config, sources).await;
    Running {
        base: e.base,
        reload: e.reload,
        shutdown: e.shutdown,
        running: e.running,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.running.await.unwrap().unwrap();
    }
}

fn audit_actions(dir: &Path, rollout: &str) -> Vec<String> {
    let store = Store::open(&dir.join("state")).unwrap();
    let page = store.audit_page(rollout, None, 1000).unwrap();
    page.items.into_iter().rev().map(|a| a.action).collect()
}

/// The history of every run, oldest first, through the API (the database is the running
/// daemon's alone).
async fn history_actions(base: &str, rollout: &str) -> Vec<String> {
    let url = format!("{base}/v1/rollouts/{rollout}/history?run=all&limit=500");
    let Ok(resp) = reqwest::get(url).await else {
        return Vec::new();
    };
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    let mut actions: Vec<String> = v["entries"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["action"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    actions.reverse();
    actions
}

/// Wait until the backend has refused `n` more queries than it had when this was called.
async fn refused(backend: &Backend, n: usize) {
    let from = backend.failed.load(Ordering::SeqCst);
    wait_for("failed queries", Duration::from_secs(20), || async {
        (backend.failed.load(Ordering::SeqCst) >= from + n).then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_during_a_backend_outage_does_not_promote_on_the_evidence_before_it() {
    let dir = temp_dir("outage-restart");
    let config = write_config(&dir, "http://127.0.0.1:9", "http://127.0.0.1:9/weights");
    std::fs::write(dir.join("rules/steady.toml"), rule("steady", "good", "4s")).unwrap();
    let backend = Backend::default();

    let daemon = start(&config, &backend).await;
    // The first stage's pass is in; its minimum duration (4 s) is not over yet.
    wait_for("a counted pass at 10%", Duration::from_secs(20), || async {
        let audit = audit_actions(&dir, "steady");
        let r = rollout(&daemon.base, "steady").await?;
        (r.weight == 10 && audit.iter().any(|a| a == "analysis-recorded")).then_some(())
    })
    .await;
    // The backend goes down, and stays down past the stage's minimum duration: the rollout holds.
    backend.down.store(true, Ordering::SeqCst);
    refused(&backend, 5).await;
    let held = rollout(&daemon.base, "steady").await.unwrap();
    assert_eq!((held.phase.as_str(), held.weight), ("progressing", 10));
    daemon.stop().await;

    // Restarted while the backend is still down: it keeps holding at 10%.
    let daemon = start(&config, &backend).await;
    refused(&backend, 3).await;
    let after = rollout(&daemon.base, "steady").await.unwrap();
    let audit = audit_actions(&dir, "steady");
    assert_eq!(
        (after.phase.as_str(), after.weight),
        ("progressing", 10),
        "advanced on stale evidence after a restart: {audit:?}"
    );
    assert!(!audit.contains(&"stage-advanced".to_string()), "{audit:?}");

    // The backend answers again: a fresh analysis at 10% lets the stage advance.
    backend.down.store(false, Ordering::SeqCst);
    wait_for("the advance to 50%", Duration::from_secs(20), || async {
        rollout(&daemon.base, "steady")
            .await
            .filter(|r| r.weight >= 50)
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_emergency_stop_leaves_finished_rollouts_as_they_are() {
    let dir = temp_dir("emergency-finished");
    let config = write_config(&dir, "http://127.0.0.1:9", "http://127.0.0.1:9/weights");
    std::fs::write(dir.join("rules/done.toml"), rule("done", "good", "1s")).unwrap();
    std::fs::write(dir.join("rules/bad.toml"), rule("bad", "bad", "1s")).unwrap();
    std::fs::write(dir.join("rules/mid.toml"), rule("mid", "good", "1h")).unwrap();
    let backend = Backend::default();
    let daemon = start(&config, &backend).await;
    let base = daemon.base.clone();
    wait_for(
        "done to succeed, bad to roll back",
        Duration::from_secs(30),
        || async {
            let done = rollout(&base, "done").await?;
            let bad = rollout(&base, "bad").await?;
            (done.phase == "succeeded" && bad.phase == "rolled-back").then_some(())
        },
    )
    .await;

    // Engage the stop file, wait until the running rollout is stopped, then clear it.
    std::fs::write(dir.join("stop"), "incident 42").unwrap();
    wait_for("mid to be stopped", Duration::from_secs(10), || async {
        rollout(&base, "mid")
            .await
            .filter(|r| r.phase == "emergency-stopped" && r.weight == 0)
    })
    .await;
    let done = rollout(&base, "done").await.unwrap();
    assert_eq!((done.phase.as_str(), done.weight), ("succeeded", 100));
    std::fs::remove_file(dir.join("stop")).unwrap();
    wait_for(
        "mid to be paused at 0%",
        Duration::from_secs(10),
        || async {
            rollout(&base, "mid")
                .await
                .filter(|r| r.phase == "paused" && r.weight == 0 && r.stage == Some(0))
        },
    )
    .await;

    // Finished rollouts are as they were; resume cannot move them.
    let done = rollout(&base, "done").await.unwrap();
    assert_eq!((done.phase.as_str(), done.weight), ("succeeded", 100));
    let bad = rollout(&base, "bad").await.unwrap();
    assert_eq!((bad.phase.as_str(), bad.weight), ("rolled-back", 0));
    let resume = reqwest::Client::new()
        .post(format!("{base}/v1/rollouts/bad/resume"))
        .json(&serde_json::json!({"reason": "try again"}))
        .send()
        .await
        .unwrap();
    assert!(
        resume.status().is_client_error(),
        "resume of a rolled-back rollout: {}",
        resume.status()
    );
    let bad = rollout(&base, "bad").await.unwrap();
    assert_eq!((bad.phase.as_str(), bad.weight), ("rolled-back", 0));
    daemon.stop().await;
}

const ADMIN: &str = "alice-admin-token-for-the-runs-test";

async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_new_canary_version_in_the_rule_file_is_a_new_run_with_its_own_history() {
    let dir = temp_dir("runs-file");
    let config = write_config(&dir, "http://127.0.0.1:9", "http://127.0.0.1:9/weights");
    std::fs::write(dir.join("rules/web.toml"), rule("web", "good", "1s")).unwrap();
    let backend = Backend::default();
    let daemon = start(&config, &backend).await;
    let base = daemon.base.clone();
    wait_for("run 1 to succeed", Duration::from_secs(30), || async {
        rollout(&base, "web")
            .await
            .filter(|r| r.phase == "succeeded")
    })
    .await;

    // The deploy writes the next version into the rule file.
    std::fs::write(dir.join("rules/web.toml"), rule("web", "good-v2", "1h")).unwrap();
    daemon.reload.send(()).await.unwrap();
    let detail = wait_for(
        "run 2 at the first stage",
        Duration::from_secs(10),
        || async {
            let d = get_json(&format!("{base}/v1/rollouts/web")).await;
            (d["run"] == 2 && d["weight"] == 10).then_some(d)
        },
    )
    .await;
    assert_eq!(
        (detail["phase"].as_str(), detail["canary"].as_str()),
        (Some("progressing"), Some("good-v2")),
        "{detail}"
    );
    // Its history is its own: it starts with the rule change and the new run.
    let h = get_json(&format!("{base}/v1/rollouts/web/history")).await;
    let actions: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.ends_with(&["run-started", "rule-changed"]),
        "{actions:?}"
    );
    assert!(!actions.contains(&"succeeded"), "{actions:?}");
    let changed = &h["entries"].as_array().unwrap().last().unwrap()["reason"];
    assert!(
        changed
            .as_str()
            .unwrap()
            .contains("canary `good` -> `good-v2`"),
        "{changed}"
    );
    let old = get_json(&format!("{base}/v1/rollouts/web/history?run=1")).await;
    assert_eq!(old["entries"][0]["action"], "succeeded", "{old}");
    let runs = get_json(&format!("{base}/v1/rollouts/web/runs")).await;
    assert_eq!(runs["runs"][0]["canary"], "good-v2", "{runs}");
    assert_eq!(runs["runs"][1]["last_action"], "succeeded", "{runs}");
    // The page shows the current run and links to the first; the first keeps its outcome.
    let page = reqwest::get(format!("{base}/rollouts/web"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("2 (current, shown)"), "{page}");
    assert!(page.contains("/rollouts/web?run=1"), "{page}");
    let first = reqwest::get(format!("{base}/rollouts/web?run=1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        first.contains("This is run 1, not the current one"),
        "{first}"
    );
    // The new run's analyses ask for the new version.
    wait_for("a query for good-v2", Duration::from_secs(10), || async {
        backend
            .asked
            .lock()
            .unwrap()
            .iter()
            .any(|q| q.contains("\"good-v2\""))
            .then_some(())
    })
    .await;
    daemon.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_manual_rule_waits_for_canaryd_start_and_queries_the_version_it_was_given() {
    let dir = temp_dir("runs-manual");
    let config = write_config(&dir, "http://127.0.0.1:9", "http://127.0.0.1:9/weights");
    add_tokens(&dir, &config, &[("ci", "admin", ADMIN)], "");
    let manual = rule("gated", "from-file", "1h").replace(
        "rollback_to = \"zero\"",
        "rollback_to = \"zero\"\nstart = \"manual\"",
    );
    std::fs::write(dir.join("rules/gated.toml"), manual).unwrap();
    let backend = Backend::default();
    let daemon = start(&config, &backend).await;
    let base = daemon.base.clone();
    // Loaded, not started: pending at 0%, and never queried.
    wait_for(
        "the rollout to be listed",
        Duration::from_secs(10),
        || async { rollout(&base, "gated").await },
    )
    .await;
    let pending = rollout(&base, "gated").await.unwrap();
    assert_eq!((pending.phase.as_str(), pending.weight), ("pending", 0));

    // The deploy pipeline starts it with the version it deployed, through the real CLI.
    std::fs::write(dir.join("ci-token"), format!("{ADMIN}\n")).unwrap();
    let (url, token) = (base.clone(), dir.join("ci-token"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
            .args([
                "start",
                "gated",
                "--canary",
                "build-77",
                "--reason",
                "deploy 77",
            ])
            .args(["--url", &url, "--token-file"])
            .arg(&token)
            .env_remove("CANARYD_URL")
            .env_remove("CANARYD_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("gated: run 1 (canary build-77) progressing at 10%"),
        "{stdout}"
    );
    wait_for("a query for build-77", Duration::from_secs(10), || async {
        backend
            .asked
            .lock()
            .unwrap()
            .iter()
            .any(|q| q.contains("\"build-77\""))
            .then_some(())
    })
    .await;
    assert!(
        !backend
            .asked
            .lock()
            .unwrap()
            .iter()
            .any(|q| q.contains("from-file")),
        "the file's version was queried"
    );
    // An edit of the file's version does not start a run by itself under `start = "manual"`.
    let edited = std::fs::read_to_string(dir.join("rules/gated.toml"))
        .unwrap()
        .replace("from-file", "from-file-2");
    std::fs::write(dir.join("rules/gated.toml"), edited).unwrap();
    daemon.reload.send(()).await.unwrap();
    let h = wait_for(
        "the rule change in the history",
        Duration::from_secs(10),
        || async {
            let h = get_json(&format!("{base}/v1/rollouts/gated/history")).await;
            (h["entries"][0]["action"] == "rule-changed").then_some(h)
        },
    )
    .await;
    assert!(
        h["entries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("waits for `canaryd start`"),
        "{h}"
    );
    let d = get_json(&format!("{base}/v1/rollouts/gated")).await;
    assert_eq!(
        (d["run"].as_u64(), d["canary"].as_str()),
        (Some(1), Some("build-77"))
    );
    daemon.stop().await;
}

/// A Prometheus stand-in on 127.0.0.1 answering `query_range` with 0.1 every second, or HTTP 500
/// while `down` is set; counts the refused queries in `failed`.
async fn flaky_prometheus(backend: &Backend) -> String {
    use axum::extract::Query;
    use std::collections::HashMap;
    let b = backend.clone();
    let app = axum::Router::new().route(
        "/api/v1/query_range",
        axum::routing::get(move |Query(q): Query<HashMap<String, String>>| {
            let b = b.clone();
            async move {
                if b.down.load(Ordering::SeqCst) {
                    b.failed.fetch_add(1, Ordering::SeqCst);
                    let body = serde_json::json!({
                        "status": "error", "errorType": "internal", "error": "backend down"
                    });
                    return (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(body),
                    );
                }
                let num = |k: &str| q.get(k).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
                let (start, end) = (num("start").ceil(), num("end"));
                let values: Vec<_> = (0..)
                    .map(|i| start + f64::from(i))
                    .take_while(|t| *t <= end)
                    .map(|t| serde_json::json!([t, "0.1"]))
                    .collect();
                let body = serde_json::json!({"status": "success", "data": {
                    "resultType": "matrix", "result": [{"metric": {}, "values": values}]}});
                (axum::http::StatusCode::OK, axum::Json(body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The real binary, killed with SIGKILL when dropped.
struct Binary(std::process::Child);

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &Path, port: u16) -> Binary {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["serve", "--config"])
        .arg(config)
        .env("CANARYD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CANARYD_EMERGENCY_STOP")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Binary(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_9_during_a_backend_outage_does_not_promote_the_real_binary_either() {
    let backend = Backend::default();
    let prometheus = flaky_prometheus(&backend).await;
    let dir = temp_dir("outage-kill");
    let config = write_config(&dir, &prometheus, "http://127.0.0.1:9/weights");
    std::fs::write(dir.join("rules/steady.toml"), rule("steady", "good", "4s")).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let daemon = serve(&config, port);
    wait_for("a counted pass at 10%", Duration::from_secs(30), || async {
        let r = rollout(&base, "steady").await?;
        let audit = history_actions(&base, "steady").await;
        (r.weight == 10 && audit.iter().any(|a| a == "analysis-recorded")).then_some(())
    })
    .await;
    backend.down.store(true, Ordering::SeqCst);
    // Down past the stage's minimum duration (4 s at one analysis a second), then SIGKILL.
    refused(&backend, 6).await;
    drop(daemon);
    let daemon = serve(&config, port);
    refused(&backend, 3).await;
    let after = rollout(&base, "steady").await.unwrap();
    let audit = history_actions(&base, "steady").await;
    assert_eq!(
        (after.phase.as_str(), after.weight),
        ("progressing", 10),
        "{audit:?}"
    );
    assert!(!audit.contains(&"stage-advanced".to_string()), "{audit:?}");
    backend.down.store(false, Ordering::SeqCst);
    wait_for(
        "the advance once it answers",
        Duration::from_secs(20),
        || async { rollout(&base, "steady").await.filter(|r| r.weight >= 50) },
    )
    .await;
    drop(daemon);
}

#[tokio::test(start_paused = true)]
async fn a_rule_file_removed_while_the_daemon_was_down_pauses_its_rollout_at_start() {
    let dir = temp_dir("removed-while-down");
    let config = write_config(&dir, "http://127.0.0.1:9", "http://127.0.0.1:9/weights");
    std::fs::write(dir.join("rules/gone.toml"), rule("gone", "good", "1h")).unwrap();
    std::fs::write(dir.join("rules/kept.toml"), rule("kept", "good", "1h")).unwrap();
    let backend = Backend::default();
    let daemon = start(&config, &backend).await;
    wait_for("gone at 10%", Duration::from_secs(10), || async {
        rollout(&daemon.base, "gone")
            .await
            .filter(|r| r.weight == 10)
    })
    .await;
    daemon.stop().await;
    std::fs::remove_file(dir.join("rules/gone.toml")).unwrap();
    let daemon = start(&config, &backend).await;
    let gone = rollout(&daemon.base, "gone").await.unwrap();
    assert_eq!((gone.phase.as_str(), gone.weight), ("paused", 10));
    let store = Store::open(&dir.join("state")).unwrap();
    let newest = &store.audit_page("gone", None, 1).unwrap().items[0];
    assert_eq!(newest.action, "paused");
    assert!(
        newest.reason.contains("removed while the daemon was down"),
        "{newest:?}"
    );
    daemon.stop().await;
}
