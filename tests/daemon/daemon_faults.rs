//! The embedded daemon when things around it break, against a stand-in Prometheus and real HTTP
//! servers on 127.0.0.1, all in the test's runtime on paused time (the daemon reads the test's
//! clock: its timers and its "now" move only as the test lets time pass):
//! - a webhook actuator that answers 500 to the 10% → 50% change: the rollout stays at 10% (API
//!   and store), pauses for review naming the error, the audit shows the failure, and once the
//!   actuator is fixed an operator's `resume` applies 50% and the rollout finishes;
//! - a notification receiver whose bearer-token file is missing: its message waits in the
//!   outbox; the operator creates the file and reloads, and the message arrives exactly once;
//! - rule files edited on disk without any reload request: the watcher picks them up (a new
//!   rollout appears, a tightened threshold turns a passing rollout into a rollback) and a
//!   broken edit leaves the old rules in force with `canaryd_config_last_reload_successful 0`;
//! - a rollout whose stored state cannot be read: its task fails (an error, not a panic), is
//!   restarted with backoff, counted and alerted on, and runs once the state is readable again;
//! - the stop file, then the API's emergency stop: every rollout in progress at 0% within a
//!   second of the daemon's time, and recorded so;
//! - the state database deleted while the daemon runs: no weight change after it, `/readyz`
//!   says why it is not ready, the failure is logged, counted and alerted on, and the history
//!   the daemon still had open is saved next to it; put back and restarted, the daemon carries
//!   on from where it was instead of from the first stage.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::api_support::daemon_support::{
    Received, add_tokens, embed, metrics, pass_time, rollout, rollouts, serve_webhook, temp_dir,
    test_clock, wait_for, write_config, write_rule,
};
use crate::api_support::{ALICE, fake_prometheus};
use axum::http::{HeaderMap, StatusCode};
use canaryd::daemon::DaemonError;
use canaryd::rollout::{Phase, RolloutState};
use canaryd::store::{NewAnalysis, NewIntent, Step, Store};
use chrono::SubsecRound;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

struct Daemon {
    base: String,
    dir: PathBuf,
    store: Store,
    reload: mpsc::Sender<()>,
    shutdown: CancellationToken,
    running: JoinHandle<Result<(), DaemonError>>,
}

impl Daemon {
    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.running).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
        drop(self.store);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Write the test config into `dir` (with an admin token and `edit` applied), then start the
/// daemon embedded. Rule files must already be in `dir/rules`.
async fn start(dir: &Path, webhook: &str, edit: impl FnOnce(String) -> String) -> Daemon {
    let prometheus = fake_prometheus().await;
    let path = write_config(dir, &prometheus, webhook);
    add_tokens(dir, &path, &[("alice", "admin", ALICE)], "");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
    let embedded = embed(&path).await;
    Daemon {
        base: embedded.base,
        store: Store::open(&dir.join("state")).unwrap(),
        dir: dir.to_path_buf(),
        reload: embedded.reload,
        shutdown: embedded.shutdown,
        running: embedded.running,
    }
}

fn state(store: &Store, name: &str) -> RolloutState {
    store.rollout::<RolloutState>(name).unwrap().unwrap().state
}

/// The bodies a notification receiver got, each with its Authorization header.
type Inbox = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A notification receiver on 127.0.0.1 recording each body with its Authorization header.
async fn serve_receiver() -> (String, Inbox) {
    let received: Inbox = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(
            move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let sink = Arc::clone(&sink);
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    sink.lock().unwrap().push((auth, body));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// What a webhook actuator on 127.0.0.1 was sent and did.
type Applied = Arc<Mutex<Vec<Received>>>;

/// A webhook actuator on 127.0.0.1 that records what it applied and answers 500 to any change
/// to 50% while `broken` (counted in `refused`). Its URL and the switches.
async fn serve_flaky_actuator() -> (String, Arc<AtomicBool>, Applied, Arc<Mutex<u32>>) {
    let broken = Arc::new(AtomicBool::new(true));
    let applied: Applied = Arc::default();
    let refused = Arc::new(Mutex::new(0u32));
    let (b, log, count) = (
        Arc::clone(&broken),
        Arc::clone(&applied),
        Arc::clone(&refused),
    );
    let app = axum::Router::new().route(
        "/weights",
        axum::routing::post(move |body: String| {
            let (b, log, count) = (Arc::clone(&b), Arc::clone(&log), Arc::clone(&count));
            async move {
                let r: Received = serde_json::from_str(&body).unwrap();
                if r.weight == 50 && b.load(Ordering::SeqCst) {
                    *count.lock().unwrap() += 1;
                    return (StatusCode::INTERNAL_SERVER_ERROR, "traffic router down");
                }
                log.lock().unwrap().push(r);
                (StatusCode::OK, "ok")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/weights", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, broken, applied, refused)
}

/// The webhook actuator's lines in the test config, with fewer and quicker retries.
fn quick_webhook(text: String, hook: &str) -> String {
    let lines = format!("url = \"{hook}\"\ntimeout = \"2s\"");
    text.replace(
        &lines,
        &format!("{lines}\nmax_attempts = 2\nbackoff = \"100ms\""),
    )
}

#[tokio::test(start_paused = true)]
async fn a_weight_change_the_actuator_refuses_keeps_the_rollout_where_it_was_until_resumed() {
    let (hook, broken, applied, refused) = serve_flaky_actuator().await;
    let dir = temp_dir("faults-actuator");
    write_rule(&dir, "hooked", "good", "webhook", "1s");
    let d = start(&dir, &hook, |text| quick_webhook(text, &hook)).await;
    let base = &d.base;

    // 10% applies; 50% is refused (after the webhook's and the daemon's retries).
    let paused = wait_for(
        "the rollout to pause on the refused change",
        Duration::from_secs(30),
        || async {
            rollout(base, "hooked")
                .await
                .filter(|r| r.phase == "paused")
        },
    )
    .await;
    assert_eq!(paused.weight, 10, "{paused:?}");
    assert!(*refused.lock().unwrap() >= 1);
    let weights: Vec<u8> = applied.lock().unwrap().iter().map(|r| r.weight).collect();
    assert_eq!(weights, vec![10]);
    let detail: Value = reqwest::get(format!("{base}/v1/rollouts/hooked"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["weight"], 10, "{detail}");
    let stored = state(&d.store, "hooked");
    assert_eq!(stored.weight, 10);
    let Phase::Paused { stage, reason, .. } = &stored.phase else {
        panic!("not paused: {:?}", stored.phase);
    };
    assert_eq!(*stage, 1, "paused in the stage it could not enter");
    assert!(reason.contains("from 10% to 50%"), "{reason}");
    assert!(reason.contains("500"), "{reason}");
    let audit = d.store.audit_page("hooked", None, 100).unwrap().items;
    let failure = audit
        .iter()
        .find(|a| a.action == "actuation-failed")
        .unwrap_or_else(|| panic!("no actuation-failed entry: {audit:?}"));
    assert_eq!(
        (failure.previous_weight, failure.new_weight),
        (Some(50), Some(10))
    );
    assert!(failure.reason.contains("500"), "{}", failure.reason);
    assert!(
        metrics(base)
            .await
            .contains("canaryd_actuator_failures_total{rollout=\"hooked\",actuator=\"webhook\"}"),
    );
    // Nothing moves while paused: not past the 50% stage's 2 s, nor five analyses later.
    pass_time(Duration::from_secs(5)).await;
    assert_eq!(rollout(base, "hooked").await.unwrap().weight, 10);
    assert_eq!(applied.lock().unwrap().len(), 1);

    // The actuator is fixed; an operator resumes through the API: 50% is applied, then the rest.
    broken.store(false, Ordering::SeqCst);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/rollouts/hooked/resume"))
        .bearer_auth(ALICE)
        .json(&serde_json::json!({"reason": "traffic router is back"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    wait_for(
        "the rollout to succeed",
        Duration::from_secs(30),
        || async {
            rollout(base, "hooked")
                .await
                .filter(|r| r.phase == "succeeded" && r.weight == 100)
        },
    )
    .await;
    let changes: Vec<(u8, u8)> = applied
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.previous_weight, r.weight))
        .collect();
    assert_eq!(changes, vec![(0, 10), (10, 50), (50, 100)]);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_change_left_pending_by_a_crash_that_still_fails_at_start_up_pauses_at_the_applied_weight()
 {
    let (hook, broken, applied, refused) = serve_flaky_actuator().await;
    let (receiver, received) = serve_receiver().await;
    let dir = temp_dir("faults-redrive");
    write_rule(&dir, "crashed", "good", "webhook", "1s");
    // What a kill -9 between recording the 10% → 50% step and calling the actuator leaves.
    let at_50 = RolloutState {
        phase: Phase::Progressing { stage: 1 },
        weight: 50,
        stage_started_at: Some(chrono::Utc::now()),
        ..RolloutState::new()
    };
    {
        let store = Store::open(&dir.join("state")).unwrap();
        let mut step = Step::new("crashed", &at_50, "before-the-crash", chrono::Utc::now());
        step.intent = Some(NewIntent {
            idempotency_key: "crashed/before-the-crash/10-50".to_string(),
            weight: 50,
            previous_weight: 10,
        });
        // The analysis the 10% → 50% step was taken on; its evidence table must reach the
        // notifications of the steps taken after the restart (nothing of it is in memory then).
        // Its interval's lower end is unbounded, which JSON records as null.
        let evidence = serde_json::json!({
            "checks": [{
                "name": "latency",
                "verdict": {"outcome": "pass"},
                "reason": "the canary's max 0.1 is under the threshold 0.5",
                "evidence": {
                    "baseline": {"points": 5, "dropped": 0},
                    "canary": {"points": 5, "dropped": 0,
                               "aggregate": {"aggregate": "max", "value": 0.1}},
                    "effect": {"ratio": 0.2, "difference": -0.4,
                               "interval": {"low": null, "high": 0.2, "confidence": 0.99,
                                            "scale": "difference"}},
                    "p_value": null, "test": null, "comparison": null,
                    "thresholds": {"direction": "higher-is-worse", "confidence": 0.99,
                                   "min_samples": 2, "threshold": 0.5}
                }
            }],
            "score": {}, "series": []
        });
        step.analysis = Some(NewAnalysis {
            outcome: "pass".to_string(),
            score: Some(100.0),
            evidence: serde_json::value::to_raw_value(&evidence).unwrap(),
            kept: None,
        });
        store.commit_step(&step).unwrap();
        assert_eq!(store.pending_intents().unwrap().len(), 1);
    }
    let d = start(&dir, &hook, |text| {
        quick_webhook(text, &hook).replace("http://127.0.0.1:9/unused", &receiver)
    })
    .await;
    // Restored before the tasks start: the re-driven change fails again and is put back.
    let listed = rollout(&d.base, "crashed").await.unwrap();
    assert_eq!((listed.phase.as_str(), listed.weight), ("paused", 10));
    assert!(*refused.lock().unwrap() >= 1);
    assert!(d.store.pending_intents().unwrap().is_empty());
    let stored = state(&d.store, "crashed");
    assert_eq!(stored.weight, 10);
    let Phase::Paused {
        stage: 1, reason, ..
    } = &stored.phase
    else {
        panic!("not paused at stage 2: {:?}", stored.phase);
    };
    assert!(reason.contains("from 10% to 50%"), "{reason}");
    let audit = d.store.audit_page("crashed", None, 100).unwrap().items;
    assert!(
        audit.iter().any(|a| a.action == "actuation-failed"),
        "{audit:?}"
    );
    // The on-call hears of the failed change with the evidence of the analysis before the crash.
    let (_, failed) = wait_for(
        "the failed-change notification",
        Duration::from_secs(15),
        || async {
            received
                .lock()
                .unwrap()
                .iter()
                .find(|(_, b)| b["notification"]["event"] == "actuator-failed")
                .cloned()
        },
    )
    .await;
    let rows = &failed["notification"]["checks"];
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{failed}");
    assert_eq!(rows[0]["check"], "latency", "{failed}");
    assert_eq!(rows[0]["verdict"], "pass", "{failed}");
    assert_eq!(rows[0]["measure"], "max", "{failed}");
    assert_eq!(rows[0]["canary"], 0.1, "{failed}");
    assert_eq!(rows[0]["difference"], -0.4, "{failed}");

    // Fixed and resumed: the 50% goes through with a fresh key.
    broken.store(false, Ordering::SeqCst);
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/rollouts/crashed/resume", d.base))
        .bearer_auth(ALICE)
        .json(&serde_json::json!({"reason": "actuator fixed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for("50% applied", Duration::from_secs(15), || async {
        rollout(&d.base, "crashed").await.filter(|r| r.weight >= 50)
    })
    .await;
    let first = applied.lock().unwrap().first().cloned().unwrap();
    assert_eq!((first.previous_weight, first.weight), (10, 50));
    assert_ne!(first.idempotency_key, "crashed/before-the-crash/10-50");
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_receiver_whose_secret_file_was_missing_delivers_after_the_operator_fixes_it_and_reloads()
{
    let (url, received) = serve_receiver().await;
    let dir = temp_dir("faults-receiver");
    let token_file = dir.join("team.token");
    write_rule(&dir, "quiet", "good", "builtin", "1h");
    let d = start(&dir, "http://127.0.0.1:9/weights", |text| {
        text.replace(
            "url = \"http://127.0.0.1:9/unused\"",
            &format!(
                "url = \"{url}\"\nbearer_token_file = \"{}\"",
                token_file.display()
            ),
        )
    })
    .await;

    // The start notification is tried, fails (the receiver stands in as unavailable) and waits.
    let db = rusqlite::Connection::open(d.store.path()).unwrap();
    let error = wait_for(
        "a failed attempt in the outbox",
        Duration::from_secs(15),
        || async {
            db.query_row(
                "SELECT last_error FROM outbox WHERE receiver = 'team' AND status = 'pending' \
                 AND attempts >= 1",
                [],
                |row| row.get::<_, Option<String>>(0),
            )
            .ok()
            .flatten()
        },
    )
    .await;
    assert!(error.contains("team.token"), "{error}");
    assert!(received.lock().unwrap().is_empty());

    // The operator writes the secret and reloads (SIGHUP / systemctl reload).
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    d.reload.send(()).await.unwrap();
    let (auth, body) = wait_for(
        "the notification to arrive",
        Duration::from_secs(30),
        || async { received.lock().unwrap().first().cloned() },
    )
    .await;
    assert_eq!(auth.as_deref(), Some("Bearer s3cret-token"));
    assert_eq!(body["notification"]["rollout"], "quiet", "{body}");
    assert_eq!(body["notification"]["event"], "started", "{body}");
    // Exactly once: the outbox marks it sent and nothing is sent again.
    wait_for(
        "the outbox to mark it sent",
        Duration::from_secs(10),
        || async {
            db.query_row(
                "SELECT COUNT(*) FROM outbox WHERE receiver = 'team' AND status = 'sent'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .ok()
            .filter(|n| *n == 1)
        },
    )
    .await;
    // Five of the dispatcher's polls later, nothing was sent again.
    pass_time(Duration::from_secs(5)).await;
    let all = received.lock().unwrap().clone();
    assert_eq!(all.len(), 1, "{all:?}");
    drop(db);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn rule_files_edited_on_disk_are_picked_up_without_a_reload_request() {
    let dir = temp_dir("faults-watch");
    write_rule(&dir, "watched", "good", "builtin", "1h");
    // No reload is ever sent: the directory watch must do it.
    let d = start(&dir, "http://127.0.0.1:9/weights", |t| t).await;
    let base = &d.base;
    wait_for("watched to start", Duration::from_secs(10), || async {
        rollout(base, "watched").await.filter(|r| r.weight == 10)
    })
    .await;

    // A broken file: the old rules stay in force and the metric says the reload failed.
    std::fs::write(dir.join("rules/broken.toml"), "[rollout\nname = ").unwrap();
    wait_for(
        "the failed reload in /metrics",
        Duration::from_secs(10),
        || async {
            metrics(base)
                .await
                .contains("canaryd_config_last_reload_successful 0")
                .then_some(())
        },
    )
    .await;
    let analysed = |store: &Store| {
        store
            .analyses_page("watched", None, 1000)
            .unwrap()
            .items
            .len()
    };
    let before = analysed(&d.store);
    wait_for(
        "watched to keep being analysed",
        Duration::from_secs(10),
        || async { (analysed(&d.store) > before).then_some(()) },
    )
    .await;
    let watched = rollout(base, "watched").await.unwrap();
    assert_eq!(
        (watched.phase.as_str(), watched.weight),
        ("progressing", 10)
    );
    std::fs::remove_file(dir.join("rules/broken.toml")).unwrap();
    wait_for("a good reload", Duration::from_secs(10), || async {
        metrics(base)
            .await
            .contains("canaryd_config_last_reload_successful 1")
            .then_some(())
    })
    .await;

    // A new rule file: a new rollout appears.
    write_rule(&dir, "newcomer", "good", "builtin", "1h");
    wait_for("the new rollout", Duration::from_secs(10), || async {
        rollout(base, "newcomer").await.filter(|r| r.weight == 10)
    })
    .await;

    // A tightened threshold: the passing canary (latency 0.1) now fails and rolls back.
    let path = dir.join("rules/watched.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("threshold = 0.5"));
    std::fs::write(&path, text.replace("threshold = 0.5", "threshold = 0.05")).unwrap();
    let rolled = wait_for("watched to roll back", Duration::from_secs(15), || async {
        rollout(base, "watched")
            .await
            .filter(|r| r.phase == "rolled-back")
    })
    .await;
    assert_eq!(rolled.weight, 0);
    let newcomer = rollout(base, "newcomer").await.unwrap();
    assert_eq!(
        (newcomer.phase.as_str(), newcomer.weight),
        ("progressing", 10)
    );
    assert_eq!(rollouts(base).await.len(), 2);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_rollout_task_whose_state_cannot_be_loaded_is_restarted_counted_and_alerted_until_it_can_run()
 {
    let load_panics = count_panics_naming("state of rollout");
    let (url, received) = serve_receiver().await;
    let dir = temp_dir("faults-panic");
    write_rule(&dir, "first", "good", "builtin", "1h");
    let d = start(&dir, "http://127.0.0.1:9/weights", |text| {
        text.replace("http://127.0.0.1:9/unused", &url)
    })
    .await;
    let base = &d.base;
    wait_for("first to start", Duration::from_secs(10), || async {
        rollout(base, "first").await.filter(|r| r.weight == 10)
    })
    .await;

    // A state row nobody can read (written by another version, say) for a rollout whose rule
    // file arrives now: loading it fails, and the task ends with that error (no panic).
    let db = rusqlite::Connection::open(d.store.path()).unwrap();
    db.execute(
        "INSERT INTO rollouts (name, state, rule_fingerprint, updated_at) \
         VALUES ('unreadable', '{\"phase\":\"from-the-future\"}', 'x', 0)",
        [],
    )
    .unwrap();
    write_rule(&dir, "unreadable", "good", "builtin", "1h");
    d.reload.send(()).await.unwrap();
    wait_for(
        "two restarts in /metrics",
        Duration::from_secs(15),
        || async {
            let m = metrics(base).await;
            m.lines()
                .find_map(|l| {
                    l.strip_prefix("canaryd_rollout_task_restarts_total{rollout=\"unreadable\"} ")
                })
                .and_then(|n| n.trim().parse::<f64>().ok())
                .filter(|n| *n >= 2.0)
        },
    )
    .await;
    let alert = wait_for("the restart alert", Duration::from_secs(15), || async {
        received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| body.clone())
            .find(|b| {
                b["notification"]["rollout"] == "unreadable" && b.to_string().contains("failed")
            })
    })
    .await;
    assert!(
        alert.to_string().contains("state of rollout"),
        "the alert says why: {alert}"
    );
    assert!(
        !alert.to_string().contains("panicked"),
        "a load failure is an error, not a panic: {alert}"
    );
    assert_eq!(
        load_panics.load(Ordering::SeqCst),
        0,
        "the task panicked to be restarted"
    );
    assert_eq!(alert["notification"]["event"], "task-restarted", "{alert}");
    // The other rollout is untouched.
    let first = rollout(base, "first").await.unwrap();
    assert_eq!((first.phase.as_str(), first.weight), ("progressing", 10));

    // The row is removed (the operator's fix): the next restart runs the rollout.
    db.execute("DELETE FROM rollouts WHERE name = 'unreadable'", [])
        .unwrap();
    wait_for(
        "the restarted rollout to start",
        Duration::from_secs(20),
        || async { rollout(base, "unreadable").await.filter(|r| r.weight == 10) },
    )
    .await;
    drop(db);
    d.stop().await;
}

/// Counts the panics (on any thread of this test binary) whose message contains `needle`; the
/// previous panic hook still runs, so other tests' failures print as usual.
fn count_panics_naming(needle: &'static str) -> Arc<std::sync::atomic::AtomicUsize> {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains(needle) {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    count
}

/// `/readyz`'s status and text.
async fn readyz(base: &str) -> (u16, String) {
    let resp = reqwest::get(format!("{base}/readyz")).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Deletes the state database's files in `dir` (`rm canaryd.db*`); the names deleted.
fn delete_database(dir: &Path) -> Vec<String> {
    let mut deleted = Vec::new();
    for name in ["canaryd.db", "canaryd.db-wal", "canaryd.db-shm"] {
        if std::fs::remove_file(dir.join(name)).is_ok() {
            deleted.push(name.to_string());
        }
    }
    deleted
}

#[tokio::test(start_paused = true)]
async fn deleting_the_database_while_running_stops_every_action_until_it_is_restored() {
    let (hook, applied) = serve_webhook().await;
    let (receiver, alerts) = serve_receiver().await;
    let dir = temp_dir("faults-deleted");
    // 10% for 2 s, then 50% and 100%: left alone, the rollout finishes within seconds.
    write_rule(&dir, "kept", "good", "webhook", "2s");
    let hook_url = format!("http://{hook}/weights");
    let d = start(&dir, &hook_url, |text| {
        text.replace("http://127.0.0.1:9/unused", &receiver)
    })
    .await;
    let base = d.base.clone();
    wait_for("the 10% change", Duration::from_secs(15), || async {
        (!applied.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    assert_eq!(readyz(&base).await.0, 200);

    // The database goes away under the running daemon.
    let state_dir = dir.join("state");
    let deleted = delete_database(&state_dir);
    assert!(deleted.contains(&"canaryd.db".to_string()), "{deleted:?}");

    // Not ready, and saying why, before any weight change.
    let why = wait_for(
        "/readyz to say not ready (or a weight change)",
        Duration::from_secs(10),
        || async {
            let later: Vec<u8> = applied
                .lock()
                .unwrap()
                .iter()
                .skip(1)
                .map(|r| r.weight)
                .collect();
            assert!(
                later.is_empty(),
                "the daemon acted after its database was deleted: {later:?}"
            );
            let (status, text) = readyz(&base).await;
            (status == 503).then_some(text)
        },
    )
    .await;
    assert!(
        why.contains(&state_dir.join("canaryd.db").display().to_string()),
        "{why}"
    );
    assert!(why.contains("deleted"), "{why}");
    // What the daemon still had open was saved next to it, and /readyz says where.
    let rescued: Vec<PathBuf> = std::fs::read_dir(&state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("canaryd.db.rescued-"))
        .collect();
    assert_eq!(rescued.len(), 1, "{rescued:?}");
    assert!(why.contains(&rescued[0].display().to_string()), "{why}");
    // Alerted (straight to the receivers: the outbox is in the database) and counted.
    let (_, alert) = wait_for("the storage alert", Duration::from_secs(15), || async {
        alerts
            .lock()
            .unwrap()
            .iter()
            .find(|(_, b)| b["notification"]["event"] == "storage-failed")
            .cloned()
    })
    .await;
    let message = alert["notification"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("deleted"), "{alert}");
    assert_eq!(alert["notification"]["severity"], "critical", "{alert}");
    assert!(
        metrics(&base)
            .await
            .contains("canaryd_state_database_healthy 0"),
        "{}",
        metrics(&base).await
    );
    // Well past the 2 s the first stage needed (and the 2 s of the next): still no weight
    // change, still not ready.
    pass_time(Duration::from_secs(6)).await;
    let weights: Vec<u8> = applied.lock().unwrap().iter().map(|r| r.weight).collect();
    assert_eq!(weights, [10], "the daemon acted on a deleted database");
    assert_eq!(readyz(&base).await.0, 503);
    d.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), d.running).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    drop(d.store);

    // The saved copy put back and the daemon restarted: the rollout goes on from 10%, not from
    // the first stage again.
    std::fs::rename(&rescued[0], state_dir.join("canaryd.db")).unwrap();
    let again = embed(&dir.join("canaryd.toml")).await;
    wait_for(
        "the rollout to succeed",
        Duration::from_secs(30),
        || async {
            rollout(&again.base, "kept")
                .await
                .filter(|r| r.phase == "succeeded" && r.weight == 100)
        },
    )
    .await;
    let changes: Vec<(u8, u8)> = applied
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.previous_weight, r.weight))
        .collect();
    assert_eq!(changes, [(0, 10), (10, 50), (50, 100)]);
    let store = Store::open(&state_dir).unwrap();
    let started = store
        .audit_page("kept", None, 100)
        .unwrap()
        .items
        .iter()
        .filter(|a| a.action == "run-started" || a.action == "started")
        .count();
    assert_eq!(started, 1, "the rollout was started again from scratch");
    again.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), again.running).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// When rollout `name` was last emergency-stopped, by the daemon's clock.
fn stopped_at(store: &Store, name: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let audit = store.audit_page(name, None, 100).ok()?.items;
    audit
        .iter()
        .filter(|a| a.action == "emergency-stopped")
        .map(|a| a.at)
        .max()
}

/// The emergency stop's promise, on the daemon's time: the stop file, then the API, take every
/// rollout in progress to 0% within a second, and the decision is recorded within that second
/// (the file is polled every 250 ms; the API stop is applied at once).
#[tokio::test(start_paused = true)]
async fn the_stop_file_and_the_api_stop_every_rollout_at_zero_within_a_second() {
    let dir = temp_dir("faults-stop");
    write_rule(&dir, "one", "good", "builtin", "1h");
    write_rule(&dir, "two", "good", "builtin", "1h");
    let d = start(&dir, "http://127.0.0.1:9/weights", |text| text).await;
    let base = d.base.clone();
    let both = |phase: &'static str, weight: u8| {
        let base = base.clone();
        move || {
            let base = base.clone();
            async move {
                let all = rollouts(&base).await;
                (all.len() == 2 && all.iter().all(|r| r.phase == phase && r.weight == weight))
                    .then_some(())
            }
        }
    };
    wait_for(
        "both rollouts at 10%",
        Duration::from_secs(15),
        both("progressing", 10),
    )
    .await;

    // The stop file.
    std::fs::write(dir.join("stop"), "").unwrap();
    // The store keeps milliseconds.
    let written = test_clock().now().trunc_subsecs(3);
    wait_for(
        "the stop file to stop both",
        Duration::from_secs(1),
        both("emergency-stopped", 0),
    )
    .await;
    for name in ["one", "two"] {
        let at = stopped_at(&d.store, name).expect("an emergency-stopped audit entry");
        assert!(
            at >= written && at - written <= chrono::Duration::seconds(1),
            "{name} stopped {} ms after the file appeared",
            (at - written).num_milliseconds()
        );
        let w: Value = reqwest::get(format!("{base}/v1/rollouts/{name}/weight"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(w["weight"], 0, "{name}: {w}");
    }
    std::fs::remove_file(dir.join("stop")).unwrap();
    wait_for(
        "the stop to clear",
        Duration::from_secs(5),
        both("paused", 0),
    )
    .await;
    let resumed = reqwest::Client::new();
    for name in ["one", "two"] {
        let resp = resumed
            .post(format!("{base}/v1/rollouts/{name}/resume"))
            .bearer_auth(ALICE)
            .json(&serde_json::json!({"reason": "all clear"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    wait_for(
        "both rollouts back at 10%",
        Duration::from_secs(15),
        both("progressing", 10),
    )
    .await;

    // The API.
    let asked = test_clock().now().trunc_subsecs(3);
    let resp = resumed
        .post(format!("{base}/v1/emergency-stop"))
        .bearer_auth(ALICE)
        .json(&serde_json::json!({"reason": "bad deploy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_for(
        "the API stop",
        Duration::from_secs(1),
        both("emergency-stopped", 0),
    )
    .await;
    for name in ["one", "two"] {
        let at = stopped_at(&d.store, name).unwrap();
        assert!(
            at >= asked && at - asked <= chrono::Duration::seconds(1),
            "{name} stopped {} ms after the API was asked",
            (at - asked).num_milliseconds()
        );
    }
    assert!(
        metrics(&base)
            .await
            .contains("canaryd_emergency_stop_active 1")
    );
    d.stop().await;
}
