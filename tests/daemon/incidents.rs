//! Incidents as on-call lives them, with the embedded daemon on paused time and real receivers:
//! a PagerDuty-shaped endpoint (Events v2 on 127.0.0.1) and a real SMTP server (aiosmtpd).
//! - a rolled-back rollout that is retried (`POST .../start`) closes its rollback incident;
//! - a backend-errors incident closes when the backend answers again;
//! - one broken rule file, reloaded again and again, is one email, worded as a daemon event
//!   (no rollout called "canaryd", no link to a page that does not exist), and a second email
//!   says it is resolved when the file is fixed.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::api_support::daemon_support::{Embedded, embed, pass_time, temp_dir, wait_for};
use crate::api_support::{ALICE, fake_prometheus};
use crate::smtp::{Options, SmtpServer, leaf_parts, split};

/// A PagerDuty-shaped endpoint recording every event; its URL and the events.
async fn serve_pager() -> (String, Arc<Mutex<Vec<Value>>>) {
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&events);
    let app = axum::Router::new().route(
        "/v2/enqueue",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body);
                (StatusCode::ACCEPTED, "{\"status\":\"success\"}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, events)
}

/// A Prometheus stand-in that answers 503 while `down`, and a steady 0.1 otherwise.
async fn serve_flaky_prometheus() -> (String, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&down);
    let app = axum::Router::new().route(
        "/api/v1/query_range",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >| {
                let flag = Arc::clone(&flag);
                async move {
                    if flag.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, "down".to_string());
                    }
                    let num = |k: &str| q.get(k).and_then(|v| v.parse::<f64>().ok());
                    let (start, end) = (num("start").unwrap_or(0.0), num("end").unwrap_or(0.0));
                    let mut values = Vec::new();
                    let mut t = start.ceil();
                    while t <= end {
                        values.push(json!([t, "0.1"]));
                        t += 1.0;
                    }
                    let body = json!({"status": "success", "data": {"resultType": "matrix",
                        "result": [{"metric": {}, "values": values}]}});
                    (StatusCode::OK, body.to_string())
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, down)
}

/// A rule for `name` on `source` whose canary is the series `canary`; `routes` is its
/// `[[routes]]` tables.
fn rule(name: &str, source: &str, canary: &str, routes: &str) -> String {
    format!(
        r#"
[rollout]
name = "{name}"
team = "shop"
source = "{source}"
actuator = "builtin"
rollback_to = "zero"

[analysis]
every = "1s"
warmup = "1s"

[[stages]]
name = "10%"
weight = 10
min_duration = "1h"

[[stages]]
name = "100%"
weight = 100
min_duration = "1h"

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
action = "rollback"

{routes}
"#
    )
}

/// The daemon config for `dir`: sources `good` (a steady fake) and `flaky`, a pager and a mail
/// receiver, an admin token.
fn config(dir: &Path, good: &str, flaky: &str, pager: &str, smtp_port: u16) -> String {
    let key = dir.join("pd.key");
    std::fs::write(&key, "R0UTINGKEY\n").unwrap();
    std::fs::write(
        dir.join("tokens"),
        format!(
            "alice admin {}\n",
            canaryd::tokens::hex(&canaryd::tokens::sha256(ALICE.as_bytes()))
        ),
    )
    .unwrap();
    let d = dir.display();
    format!(
        r#"
state_dir = "{d}/state"
rules_dir = "{d}/rules"

[server]
listen = "127.0.0.1:0"
public_url = "http://canaryd.example.com"
token_file = "{d}/tokens"

[scheduler]
backend_error_limit = 2

[sources.good]
kind = "prometheus"
url = "{good}"
timeout = "2s"
retries = 0

[sources.flaky]
kind = "prometheus"
url = "{flaky}"
timeout = "2s"
retries = 0

[actuators.builtin]
kind = "builtin"

[receivers.pager]
kind = "pagerduty"
url = "{pager}"
routing_key_file = "{}"

[receivers.mail]
kind = "email"
to = ["oncall@example.com"]
from = "canaryd@example.com"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
tls = "none"
"#,
        key.display()
    )
}

struct Setup {
    dir: std::path::PathBuf,
    daemon: Embedded,
    pager: Arc<Mutex<Vec<Value>>>,
    flaky_down: Arc<AtomicBool>,
    smtp: SmtpServer,
}

/// Start the daemon with `rules` `(file name, text)` in its rules directory.
async fn start(tag: &str, rules: &[(&str, String)]) -> Setup {
    let smtp = SmtpServer::start(Options::default());
    let good = fake_prometheus().await;
    let (flaky, flaky_down) = serve_flaky_prometheus().await;
    let (pager_url, pager) = serve_pager().await;
    let dir = temp_dir(tag);
    for (file, text) in rules {
        std::fs::write(dir.join("rules").join(file), text).unwrap();
    }
    let path = dir.join("canaryd.toml");
    std::fs::write(&path, config(&dir, &good, &flaky, &pager_url, smtp.port)).unwrap();
    let daemon = embed(&path).await;
    Setup {
        dir,
        daemon,
        pager,
        flaky_down,
        smtp,
    }
}

impl Setup {
    async fn stop(self) {
        self.daemon.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.daemon.running).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn events(&self) -> Vec<Value> {
        self.pager.lock().unwrap().clone()
    }

    /// The dedup_key of the first trigger of class `class`, once the pager has it.
    async fn trigger_of(&self, class: &str) -> String {
        wait_for(
            &format!("a {class} trigger at the pager"),
            Duration::from_secs(60),
            || async {
                self.events()
                    .iter()
                    .find(|e| e["event_action"] == "trigger" && e["payload"]["class"] == class)
                    .map(|e| e["dedup_key"].as_str().unwrap().to_string())
            },
        )
        .await
    }

    /// Waits until the pager got a resolve for `key`, after its trigger.
    async fn resolved(&self, key: &str, what: &str) {
        wait_for(what, Duration::from_secs(60), || async {
            let events = self.events();
            let trigger = events
                .iter()
                .position(|e| e["dedup_key"] == key && e["event_action"] == "trigger")?;
            events[trigger..]
                .iter()
                .any(|e| e["dedup_key"] == key && e["event_action"] == "resolve")
                .then_some(())
        })
        .await;
    }
}

/// The emails received so far as (subject, plain-text body).
fn emails(smtp: &SmtpServer) -> Vec<(String, String)> {
    smtp.messages()
        .iter()
        .map(|raw| {
            let subject = split(raw).header("subject").unwrap_or("").to_string();
            let text = leaf_parts(raw)
                .into_iter()
                .find(|p| {
                    p.header("content-type")
                        .is_some_and(|c| c.starts_with("text/plain"))
                })
                .map(|p| p.body)
                .unwrap_or_default();
            (subject, text)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_retried_rollback_closes_its_incident_at_the_pager() {
    let routes = "[[routes]]\nreceivers = [\"pager\"]\nmin_severity = \"warning\"\n";
    let s = start(
        "incidents-retry",
        &[("failing.toml", rule("failing", "good", "bad", routes))],
    )
    .await;
    let key = s.trigger_of("rolled-back").await;

    let answer = reqwest::Client::new()
        .post(format!("{}/v1/rollouts/failing/start", s.daemon.base))
        .bearer_auth(ALICE)
        .json(&json!({"reason": "fixed the canary"}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    s.resolved(&key, "the rollback incident resolved after the retry")
        .await;
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_backend_errors_incident_closes_when_the_backend_answers_again() {
    let routes = "[[routes]]\nreceivers = [\"pager\"]\nmin_severity = \"warning\"\n";
    let s = start(
        "incidents-backend",
        &[("steady.toml", rule("steady", "flaky", "good", routes))],
    )
    .await;
    let key = s.trigger_of("backend-errors").await;
    s.flaky_down.store(false, Ordering::SeqCst);
    s.resolved(&key, "the backend-errors incident resolved")
        .await;
    // It stays closed while the backend keeps answering.
    pass_time(Duration::from_secs(10)).await;
    let last = s
        .events()
        .into_iter()
        .rfind(|e| e["dedup_key"] == key.as_str())
        .unwrap();
    assert_eq!(last["event_action"], "resolve", "{:?}", s.events());
    s.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_broken_rule_file_is_one_daemon_incident_resolved_when_fixed() {
    let routes = "[[routes]]\nreceivers = [\"mail\"]\nevents = [\"config-reload-failed\"]\n";
    let s = start(
        "incidents-reload",
        &[("steady.toml", rule("steady", "good", "good", routes))],
    )
    .await;
    // A new rule file that does not load, saved four times with other mistakes while it is
    // being fixed, each noticed by the watcher and reloaded.
    let broken = s.dir.join("rules").join("shop-b.toml");
    for attempt in 0..4 {
        std::fs::write(
            &broken,
            format!("[rollout]\nname = \"shop-b\"\nteam = {attempt}\n"),
        )
        .unwrap();
        pass_time(Duration::from_secs(2)).await;
        s.daemon.reload.send(()).await.unwrap();
    }
    wait_for("the reload alert", Duration::from_secs(30), || async {
        (!emails(&s.smtp).is_empty()).then_some(())
    })
    .await;
    pass_time(Duration::from_secs(20)).await;
    let mails = emails(&s.smtp);
    assert_eq!(mails.len(), 1, "one broken file, one email: {mails:#?}");
    let (subject, text) = &mails[0];
    assert!(text.contains("shop-b.toml"), "{text}");
    for wrong in [
        "Rollout canaryd",
        "rollouts/canaryd",
        "canaryd status canaryd",
    ] {
        assert!(
            !text.contains(wrong) && !subject.contains(wrong),
            "{wrong:?} in {subject}\n{text}"
        );
    }
    assert!(!subject.contains(" canaryd:"), "{subject}");

    // Fixed: the next reload resolves it, in a second email.
    std::fs::write(&broken, rule("shop-b", "good", "good", routes)).unwrap();
    s.daemon.reload.send(()).await.unwrap();
    wait_for("the resolve email", Duration::from_secs(30), || async {
        (emails(&s.smtp).len() >= 2).then_some(())
    })
    .await;
    pass_time(Duration::from_secs(10)).await;
    let mails = emails(&s.smtp);
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(mails[1].0.contains("RESOLVED"), "{:?}", mails[1].0);
    s.stop().await;
}
