//! Each rule file stands alone, against the embedded daemon with real files in a temporary rules
//! directory, a stand-in Prometheus and a real webhook receiver on 127.0.0.1:
//! - a broken edit of one file keeps that file's last good rule running and alerts naming the
//!   file:line:col, while another file added at the same time starts its rollout; fixing the
//!   file puts its new rule in force and clears the broken-file metrics;
//! - removing a file pauses its rollout on that very reload, with an audit entry naming the file,
//!   even while another file is broken, and the rollout gets no further analyses;
//! - a second file naming a running rollout is refused (the running file keeps the name), and
//!   alerts naming the duplicate's file:line:col.
//!
//! Waits are bounded polls for what a user would see (API, store, receiver, `/metrics`), never
//! assertions on elapsed time.

use crate::api_support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_support::daemon_support::{
    add_tokens, embed, metrics, rollout, temp_dir, wait_for, write_config, write_rule,
};
use api_support::{ALICE, fake_prometheus};
use canaryd::daemon::DaemonError;
use canaryd::store::Store;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bounds of the polls: generous, so a loaded machine only makes the test slower.
const START: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(30);

struct Daemon {
    base: String,
    dir: PathBuf,
    store: Store,
    reload: mpsc::Sender<()>,
    shutdown: CancellationToken,
    running: JoinHandle<Result<(), DaemonError>>,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Daemon {
    async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.running).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
        drop(self.store);
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn rule_path(&self, name: &str) -> PathBuf {
        self.dir.join("rules").join(format!("{name}.toml"))
    }

    /// Ask for a reload (the directory watch may also have started one).
    async fn reload(&self) {
        self.reload.send(()).await.unwrap();
    }

    fn analyses(&self, rollout: &str) -> usize {
        self.store
            .analyses_page(rollout, None, 1000)
            .unwrap()
            .items
            .len()
    }

    /// Wait until each of `rollouts` has more analyses than now.
    async fn more_analyses(&self, rollouts: &[&str]) {
        let before: Vec<usize> = rollouts.iter().map(|r| self.analyses(r)).collect();
        for (r, n) in rollouts.iter().zip(before) {
            wait_for(&format!("{r} to be analysed again"), SETTLE, || async {
                (self.analyses(r) > n).then_some(())
            })
            .await;
        }
    }

    /// The first notification body received whose text contains every one of `needles`.
    async fn notification(&self, what: &str, needles: &[&str]) -> Value {
        wait_for(what, SETTLE, || async {
            self.received
                .lock()
                .unwrap()
                .iter()
                .find(|b| {
                    let text = b.to_string();
                    needles.iter().all(|n| text.contains(n))
                })
                .cloned()
        })
        .await
    }

    /// `GET /v1/rollouts/NAME` as JSON.
    async fn detail(&self, name: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}/v1/rollouts/{name}", self.base))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A notification receiver on 127.0.0.1 recording every body.
async fn serve_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Write the test config into `dir` (notifications to a recording receiver) and start the
/// daemon on the rule files already in `dir/rules`, each of `rollouts` started at 10%.
async fn start(dir: &Path, rollouts: &[&str]) -> Daemon {
    let (url, received) = serve_receiver().await;
    let prometheus = fake_prometheus().await;
    let path = write_config(dir, &prometheus, "http://127.0.0.1:9/weights");
    add_tokens(dir, &path, &[("alice", "admin", ALICE)], "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("http://127.0.0.1:9/unused", &url);
    std::fs::write(&path, text).unwrap();
    let embedded = embed(&path).await;
    for name in rollouts {
        wait_for(&format!("{name} to start"), START, || async {
            rollout(&embedded.base, name)
                .await
                .filter(|r| r.phase == "progressing" && r.weight == 10)
        })
        .await;
    }
    Daemon {
        base: embedded.base,
        store: Store::open(&dir.join("state")).unwrap(),
        dir: dir.to_path_buf(),
        reload: embedded.reload,
        shutdown: embedded.shutdown,
        running: embedded.running,
        received,
    }
}

/// The line (from 1) of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` is not in the text"))
        + 1
}

/// The value of the `/metrics` line starting with `series ` (`None` without one).
fn series(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn audit_reasons(store: &Store, rollout: &str) -> Vec<(String, String)> {
    let page = store.audit_page(rollout, None, 1000).unwrap();
    page.items
        .into_iter()
        .rev()
        .map(|a| (a.action, a.reason))
        .collect()
}

/// Issue 16 point 6 (a) and (c): one broken file no longer blocks another file's addition; it
/// keeps its last good rule running and alerts naming file:line:col; once fixed, its new rule
/// is in force and the broken-file metrics clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_file_keeps_its_last_good_rule_while_a_new_file_starts_its_rollout() {
    let dir = temp_dir("rule-files-broken");
    write_rule(&dir, "alpha", "good", "builtin", "1h");
    let d = start(&dir, &["alpha"]).await;
    let alpha_path = d.rule_path("alpha");
    let good = std::fs::read_to_string(&alpha_path).unwrap();

    // Alpha's edit tightens its threshold (the canary's 0.1 would fail it and roll back) but
    // misspells a key: the edit must not be in force, the last good rule must keep running.
    assert!(good.contains("threshold = 0.5"));
    let tightened = good.replace("threshold = 0.5", "threshold = 0.05");
    let broken = tightened.replace("min_samples = 2", "min_samples = 2\nminsamples = 3");
    let line = line_of(&broken, "minsamples");
    std::fs::write(&alpha_path, &broken).unwrap();
    // And a new file, unrelated to the typo.
    write_rule(&dir, "bravo", "good", "builtin", "1h");
    d.reload().await;

    wait_for("bravo to start", SETTLE, || async {
        rollout(&d.base, "bravo")
            .await
            .filter(|r| r.phase == "progressing" && r.weight == 10)
    })
    .await;
    let place = format!("{}:{line}:1", alpha_path.display());
    let alert = d
        .notification(
            "the alert naming alpha's file",
            &[&place, "config-reload-failed"],
        )
        .await;
    assert!(
        alert.to_string().contains("minsamples"),
        "the alert says what is wrong: {alert}"
    );
    // Alpha keeps being analysed under its last good rule: no rollback.
    d.more_analyses(&["alpha", "bravo"]).await;
    d.more_analyses(&["alpha"]).await;
    let alpha = rollout(&d.base, "alpha").await.unwrap();
    assert_eq!((alpha.phase.as_str(), alpha.weight), ("progressing", 10));
    // One alert for the file, though two rules route it to the receiver and the directory
    // watch reloaded again with the same problems.
    let alerts = d
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b.to_string().contains(&place))
        .count();
    assert_eq!(alerts, 1);
    let m = metrics(&d.base).await;
    let file_series = format!(
        "canaryd_rule_file_problems{{file=\"{}\"}}",
        alpha_path.display()
    );
    assert_eq!(series(&m, &file_series), Some(1.0), "{m}");
    assert_eq!(series(&m, "canaryd_rule_files_broken"), Some(1.0), "{m}");
    assert_eq!(
        series(&m, "canaryd_config_last_reload_successful"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(series(&m, "canaryd_rules_loaded"), Some(2.0), "{m}");
    // The API says which problems keep the running rule from being replaced.
    let detail = d.detail("alpha").await;
    let problems = detail["rule_file_problems"].to_string();
    assert!(problems.contains(&place), "{detail}");
    assert_eq!(
        d.detail("bravo").await["rule_file_problems"],
        Value::Array(vec![])
    );
    // And so does the rollout's page.
    let page = reqwest::Client::new()
        .get(format!("{}/rollouts/alpha", d.base))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Its rule file does not load"), "{page}");
    assert!(page.contains(&place), "{page}");

    // Fixed: the tightened rule is in force (alpha rolls back), bravo is untouched, and the
    // broken-file metrics clear.
    std::fs::write(&alpha_path, &tightened).unwrap();
    d.reload().await;
    wait_for("alpha's new rule to roll it back", SETTLE, || async {
        rollout(&d.base, "alpha")
            .await
            .filter(|r| r.phase == "rolled-back" && r.weight == 0)
    })
    .await;
    let m = metrics(&d.base).await;
    assert_eq!(series(&m, &file_series), None, "{m}");
    assert_eq!(series(&m, "canaryd_rule_files_broken"), Some(0.0), "{m}");
    assert_eq!(
        series(&m, "canaryd_config_last_reload_successful"),
        Some(1.0),
        "{m}"
    );
    let bravo = rollout(&d.base, "bravo").await.unwrap();
    assert_eq!((bravo.phase.as_str(), bravo.weight), ("progressing", 10));
    d.stop().await;
}

/// Issue 16 point 6 (b): removing a file pauses its rollout on the reload that sees it gone,
/// with an audit entry naming the file, even while another file is broken; it is analysed no
/// more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_file_pauses_its_rollout_at_once_even_while_another_file_is_broken() {
    let dir = temp_dir("rule-files-removed");
    write_rule(&dir, "alpha", "good", "builtin", "1h");
    write_rule(&dir, "charlie", "good", "builtin", "1h");
    // Delta is analysed once an hour: its task is surely waiting when the reload comes.
    write_rule(&dir, "delta", "good", "builtin", "1h");
    let delta_path = dir.join("rules/delta.toml");
    let text = std::fs::read_to_string(&delta_path).unwrap();
    assert!(text.contains("every = \"1s\""));
    std::fs::write(
        &delta_path,
        text.replace("every = \"1s\"", "every = \"1h\""),
    )
    .unwrap();
    let d = start(&dir, &["alpha", "charlie", "delta"]).await;
    let alpha_path = d.rule_path("alpha");
    let charlie_path = d.rule_path("charlie");

    // No reload request: the directory watch's one reload must do it (a rollout that waited
    // for a second reload to notice would stay progressing here).
    std::fs::write(&alpha_path, "[rollout\nname = ").unwrap();
    std::fs::remove_file(&charlie_path).unwrap();
    std::fs::remove_file(&delta_path).unwrap();

    let charlie = wait_for("charlie to pause", SETTLE, || async {
        rollout(&d.base, "charlie")
            .await
            .filter(|r| r.phase == "paused")
    })
    .await;
    assert_eq!(charlie.weight, 10, "pausing keeps the weight");
    wait_for("delta to pause", SETTLE, || async {
        rollout(&d.base, "delta")
            .await
            .filter(|r| r.phase == "paused")
    })
    .await;
    for (name, path) in [("charlie", &charlie_path), ("delta", &delta_path)] {
        let audit = audit_reasons(&d.store, name);
        let (action, reason) = audit.last().unwrap();
        assert_eq!(action, "paused", "{audit:?}");
        assert!(
            reason.contains(&path.display().to_string()),
            "the audit entry names the file: {audit:?}"
        );
    }
    // Charlie gets no further analyses while alpha (broken, on its last good rule) does.
    let charlie_analyses = d.analyses("charlie");
    d.more_analyses(&["alpha"]).await;
    d.more_analyses(&["alpha"]).await;
    assert_eq!(d.analyses("charlie"), charlie_analyses);
    let alpha = rollout(&d.base, "alpha").await.unwrap();
    assert_eq!((alpha.phase.as_str(), alpha.weight), ("progressing", 10));
    let detail = d.detail("charlie").await;
    assert_eq!(detail["rule_loaded"], false, "{detail}");
    d.stop().await;
}

/// A second file naming a running rollout: the file that runs it keeps it (whatever the order
/// of their names), and the newcomer is refused with an alert naming its file:line:col.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_file_naming_a_running_rollout_is_refused_and_the_running_file_keeps_it() {
    let dir = temp_dir("rule-files-duplicate");
    write_rule(&dir, "alpha", "good", "builtin", "1h");
    let d = start(&dir, &["alpha"]).await;
    let text = std::fs::read_to_string(d.rule_path("alpha")).unwrap();
    // `alpha-copy.toml` sorts before `alpha.toml`; with its threshold in force alpha would
    // roll back.
    let copy = text.replace("threshold = 0.5", "threshold = 0.05");
    let copy_path = dir.join("rules/alpha-copy.toml");
    std::fs::write(&copy_path, &copy).unwrap();
    write_rule(&dir, "bravo", "good", "builtin", "1h");
    d.reload().await;

    wait_for("bravo to start", SETTLE, || async {
        rollout(&d.base, "bravo").await.filter(|r| r.weight == 10)
    })
    .await;
    let place = format!(
        "{}:{}:",
        copy_path.display(),
        line_of(&copy, "name = \"alpha\"")
    );
    let alert = d
        .notification("the duplicate's alert", &[&place, "duplicate rollout name"])
        .await;
    assert!(
        alert
            .to_string()
            .contains(&d.rule_path("alpha").display().to_string()),
        "the alert names the file that keeps the rollout: {alert}"
    );
    d.more_analyses(&["alpha"]).await;
    d.more_analyses(&["alpha"]).await;
    let alpha = rollout(&d.base, "alpha").await.unwrap();
    assert_eq!((alpha.phase.as_str(), alpha.weight), ("progressing", 10));
    d.stop().await;
}
