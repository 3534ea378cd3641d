//! What on-call reads during one rollout's life (issue 20, point 6), in headless Chromium and
//! in the email a real SMTP server received, against the daemon embedded in-process: the page
//! says why the rollout waits for approval and prints the command, which runs as printed with
//! the real binary; a metric-backend outage shows from its first failed analysis; after a
//! rollback the charts mark the stage change and the failing moment and the stage where it
//! happened is highlighted; the email's command to start again runs as printed; and an
//! emergency stop leaves the finished run's page as it was.

use crate::api_support::{ALICE, daemon_support as support};
use crate::chromium::Chromium;
use crate::smtp::{Options, SmtpServer, leaf_parts};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{embed, temp_dir, wait_for, write_config};

const HEALTHY: u8 = 0;
const OUTAGE: u8 = 1;
const BAD_CANARY: u8 = 2;

const RULE: &str = r#"
[rollout]
name = "shop"
team = "shop"
source = "prometheus"
actuator = "builtin"
rollback_to = "zero"

[analysis]
every = "1s"
warmup = "1s"
max_inconclusive = 1000

[[stages]]
name = "canary"
weight = 10
min_duration = "1s"
required_passes = 1
approval = true

[[stages]]
name = "half"
weight = 50
min_duration = "1h"
required_passes = 1

[[stages]]
name = "full"
weight = 100
min_duration = "1h"
required_passes = 1

[sides]
label = "version"
baseline = "v1"
canary = "v2"

[[checks]]
name = "latency"
kind = "absolute"
direction = "higher-is-worse"
threshold = 0.25
aggregate = "max"
query = 'latency_seconds{ {{label}}="{{side}}" }'
window = "30s"
min_samples = 5
critical = true
action = "rollback"

[[checks]]
name = "errors"
kind = "error-rate"
tolerance = 0.01
errors_query = 'errors{ {{label}}="{{side}}" }'
total_query = 'requests{ {{label}}="{{side}}" }'
window = "30s"

[[routes]]
receivers = ["team"]
"#;

#[derive(serde::Deserialize)]
struct RangeQuery {
    query: String,
    start: f64,
    end: f64,
    step: f64,
}

/// Prometheus's `query_range` in one of three moods: healthy, down (503) or with a slow canary.
async fn query_range(
    State(mode): State<Arc<AtomicU8>>,
    Query(q): Query<RangeQuery>,
) -> (StatusCode, axum::Json<Value>) {
    let mode = mode.load(Ordering::SeqCst);
    if mode == OUTAGE {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "error", "errorType": "unavailable", "error": "down"})),
        );
    }
    let canary = q.query.contains("\"v2\"");
    let value = if q.query.starts_with("latency_seconds") {
        if canary && mode == BAD_CANARY {
            0.4
        } else {
            0.1
        }
    } else if q.query.starts_with("errors") {
        1.0
    } else {
        1000.0
    };
    let mut values = Vec::new();
    let mut t = q.start;
    while t <= q.end + 1e-9 && values.len() < 11_000 {
        values.push(json!([t, value.to_string()]));
        t += q.step.max(0.001);
    }
    (
        StatusCode::OK,
        axum::Json(json!({
            "status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
        })),
    )
}

async fn serve_prometheus(mode: Arc<AtomicU8>) -> String {
    let app = axum::Router::new()
        .route("/api/v1/query_range", axum::routing::get(query_range))
        .with_state(mode);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The rollout as the API shows it.
async fn detail(base: &str) -> Value {
    reqwest::get(format!("{base}/v1/rollouts/shop"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_phase(base: &str, phase: &str) -> Value {
    let (base, phase) = (base.to_string(), phase.to_string());
    wait_for(&format!("phase {phase}"), Duration::from_secs(30), || {
        let (base, phase) = (base.clone(), phase.clone());
        async move {
            let v = detail(&base).await;
            (v["phase"] == phase.as_str()).then_some(v)
        }
    })
    .await
}

/// Chromium's DOM of `url`, off the async threads.
async fn dom(browser: &Arc<Chromium>, tag: &str, url: String) -> String {
    let browser = Arc::clone(browser);
    let tag = tag.to_string();
    tokio::task::spawn_blocking(move || browser.dump_dom(&tag, &url))
        .await
        .unwrap()
}

/// Text as it reads once its character references are resolved.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The commands a page prints (`<code class="command">`), as text.
fn page_commands(dom: &str) -> Vec<String> {
    dom.split("<code class=\"command\">")
        .skip(1)
        .map(|rest| unescape(&rest[..rest.find("</code>").unwrap()]))
        .collect()
}

/// The commands under "To act:" in an email's plain-text part.
fn email_commands(raw: &str) -> Vec<String> {
    let text = leaf_parts(raw)
        .into_iter()
        .find(|p| {
            p.header("content-type")
                .is_some_and(|c| c.contains("text/plain"))
        })
        .expect("a text/plain part")
        .body;
    text.split("To act:")
        .nth(1)
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("canaryd "))
        .map(str::to_string)
        .collect()
}

/// Run `line` as a person pastes it into a shell: `sh -c`, with `canaryd` on the PATH, the
/// token where the printed commands read it (`~/.config/canaryd/token`) and nothing else set.
async fn run_as_printed(home: &Path, line: &str) -> (i32, String, String) {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_canaryd"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (home, line) = (home.to_path_buf(), line.to_string());
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .env_clear()
            .env("PATH", path)
            .env("HOME", home)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The `<span class="chip ...">` elements of a page, as (class, text).
fn chips(dom: &str) -> Vec<(String, String)> {
    dom.split("<span class=\"chip ")
        .skip(1)
        .map(|rest| {
            let class = rest[..rest.find('"').unwrap()].to_string();
            let text = &rest[rest.find('>').unwrap() + 1..rest.find("</span>").unwrap()];
            (class, unescape(text))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_call_reads_why_it_waits_an_outage_a_rollback_and_commands_that_run_as_printed() {
    let dir = temp_dir("story");
    let browser = Arc::new(Chromium::find(&dir.join("chromium")));
    let smtp = SmtpServer::start(Options::default());
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let prometheus = serve_prometheus(Arc::clone(&mode)).await;
    let config = write_config(&dir, &prometheus, "http://127.0.0.1:9/weights");
    support::add_tokens(&dir, &config, &[("alice", "admin", ALICE)], "");
    let port = crate::smtp::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\"\npublic_url = \"{base}\""),
        )
        // The outage must show from its first failure, long before the alert.
        .replace("backend_error_limit = 2", "backend_error_limit = 1000")
        .replace(
            "[receivers.team]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/unused\"",
            &format!(
                "[receivers.team]\nkind = \"email\"\nto = [\"shop@example.com\"]\n\
                 from = \"canaryd@example.com\"\nsmtp_host = \"127.0.0.1\"\n\
                 smtp_port = {}\ntls = \"none\"",
                smtp.port
            ),
        );
    std::fs::write(&config, text).unwrap();
    std::fs::write(dir.join("rules/shop.toml"), RULE).unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(home.join(".config/canaryd")).unwrap();
    std::fs::write(home.join(".config/canaryd/token"), format!("{ALICE}\n")).unwrap();
    let daemon = embed(&config).await;
    assert_eq!(daemon.base, base);
    let page = format!("{base}/rollouts/shop");

    // 1. Waiting for approval: the page says why, and prints the command that approves.
    wait_phase(&base, "waiting-approval").await;
    let waiting = dom(&browser, "waiting", page.clone()).await;
    assert!(
        waiting.contains("waits for approval") && waiting.contains("stage canary"),
        "why it waits:\n{waiting}"
    );
    let commands = page_commands(&waiting);
    let approve = commands
        .iter()
        .find(|c| c.starts_with("canaryd approve shop "))
        .unwrap_or_else(|| panic!("no approve command on the page: {commands:?}\n{waiting}"));

    // 2. A backend outage shows from its first failed analysis, on both pages.
    mode.store(OUTAGE, Ordering::SeqCst);
    wait_for(
        "the first failed analysis",
        Duration::from_secs(20),
        || async { detail(&base).await["held"].as_str().map(|_| ()) },
    )
    .await;
    let outage = dom(&browser, "outage", page.clone()).await;
    let overview = dom(&browser, "outage-overview", format!("{base}/")).await;
    mode.store(HEALTHY, Ordering::SeqCst);
    assert!(
        outage.contains("class=\"banner outage\"")
            && outage.contains("The metric backend is failing"),
        "no outage on the rollout's page:\n{outage}"
    );
    assert!(
        overview.contains("backend failing"),
        "no outage on the overview:\n{overview}"
    );
    wait_for(
        "the backend to answer again",
        Duration::from_secs(20),
        || async { detail(&base).await["held"].is_null().then_some(()) },
    )
    .await;

    // 3. The page's approve command runs as printed.
    let (code, out, err) = run_as_printed(&home, approve).await;
    assert_eq!(code, 0, "`{approve}` exited {code}: {err}");
    assert!(out.contains("shop: progressing at 50%"), "{out}");

    // 4. The canary slows down and is rolled back from the stage `half`.
    mode.store(BAD_CANARY, Ordering::SeqCst);
    wait_phase(&base, "rolled-back").await;
    let rolled = dom(&browser, "rolled", page.clone()).await;
    // CANARYD_WEB_SCREENSHOTS=DIR keeps a screenshot of the rolled-back page, to look at it.
    if let Some(keep) = std::env::var_os("CANARYD_WEB_SCREENSHOTS") {
        let (browser, url) = (Arc::clone(&browser), page.clone());
        let path = PathBuf::from(keep).join("story-rolled-back.png");
        tokio::task::spawn_blocking(move || browser.screenshot("shot", &url, &path, 1280, 1500))
            .await
            .unwrap();
    }
    let stage_chips = chips(&rolled);
    assert_eq!(
        stage_chips
            .iter()
            .map(|(class, _)| class.as_str())
            .collect::<Vec<_>>(),
        ["chip-done", "chip-rolled-back", "chip-pending"],
        "the stage where it was rolled back is highlighted: {stage_chips:?}"
    );
    let latency = rolled
        .split("<svg")
        .find(|svg| svg.contains("aria-label=\"latency: baseline vs canary\""))
        .unwrap_or_else(|| panic!("no latency chart:\n{rolled}"));
    assert!(
        latency.contains("class=\"moment moment-stage\""),
        "the stage change is not marked:\n{latency}"
    );
    assert!(
        latency.contains("class=\"moment moment-fail\""),
        "the failing moment is not marked:\n{latency}"
    );

    // 5. The rollback's email prints commands that run as printed: `start` begins run 2 later.
    let mails = wait_for("the rollback email", Duration::from_secs(30), || async {
        let mails = smtp.messages();
        mails
            .iter()
            .any(|m| m.contains("rolled back") || m.contains("rolled-back"))
            .then_some(mails)
    })
    .await;
    let rollback_mail = mails
        .iter()
        .rev()
        .find(|m| !email_commands(m).is_empty() && email_commands(m)[0].contains(" start "))
        .unwrap_or_else(|| panic!("no email with a start command: {mails:#?}"));
    let start = email_commands(rollback_mail)[0].clone();

    // 6. An emergency stop leaves the finished run's page as it was.
    let before = rolled.clone();
    let stop = reqwest::Client::new()
        .post(format!("{base}/v1/emergency-stop"))
        .bearer_auth(ALICE)
        .json(&json!({"reason": "drill"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 200);
    wait_for(
        "the stop in the history",
        Duration::from_secs(20),
        || async {
            let v: Value = reqwest::get(format!("{base}/v1/rollouts/shop/history?limit=5"))
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            v["entries"]
                .as_array()?
                .iter()
                .any(|e| e["action"] == "emergency-stopped")
                .then_some(())
        },
    )
    .await;
    let stopped = dom(&browser, "stopped", page.clone()).await;
    let runs_card = |dom: &str| {
        let start = dom.find("<h2>Runs</h2>").unwrap();
        dom[start..start + dom[start..].find("</table>").unwrap()].to_string()
    };
    assert!(
        runs_card(&stopped).contains("rolled-back"),
        "the run's outcome is gone after the stop:\n{}",
        runs_card(&stopped)
    );
    assert_eq!(chips(&stopped), chips(&before), "{stopped}");
    for kept in ["approved", "rolled-back", "moment moment-fail"] {
        assert!(
            stopped.contains(kept),
            "`{kept}` is gone after the stop:\n{stopped}"
        );
    }
    let clear = reqwest::Client::new()
        .delete(format!("{base}/v1/emergency-stop"))
        .bearer_auth(ALICE)
        .json(&json!({"reason": "drill over"}))
        .send()
        .await
        .unwrap();
    assert_eq!(clear.status(), 200);

    mode.store(HEALTHY, Ordering::SeqCst);
    let (code, out, err) = run_as_printed(&home, &start).await;
    assert_eq!(code, 0, "`{start}` exited {code}: {err}");
    assert!(out.contains("run 2"), "{out}");
    assert_eq!(detail(&base).await["run"], 2);

    daemon.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), daemon.running).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
