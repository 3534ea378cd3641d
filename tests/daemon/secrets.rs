//! Secrets never in the open: distinctive secrets are planted in every secret-bearing setting
//! (a Prometheus URL's `user:password@`, its bearer-token file, a webhook actuator's `?secret=`,
//! a webhook receiver's `user:password@` and `?token=`, a Slack URL read from its file, a
//! PagerDuty URL's `?secret=` and routing-key file, the SMTP password file, an API token), the
//! backends, the actuator and some receivers fail (one of them quoting the request it got, as
//! proxies do), and every output is searched for them: the API (rollouts, history, analyses,
//! runs, comparison), the status pages, `/metrics`, the daemon's logs, the notifications a
//! webhook receiver got, the email the real SMTP server got, and `canaryd check`'s output for a
//! config that repeats them where it is wrong. The embedded daemon runs on paused time.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};

use crate::api_support::daemon_support::{embed, temp_dir, test_clock, wait_for};
use crate::api_support::{ALICE, fake_prometheus};
use crate::smtp::{Options, SmtpServer};

const PROM_USER_PASS: &str = "promPassQ81x";
const PROM_QUERY_TOKEN: &str = "promQueryTok55";
const PROM_BEARER: &str = "promBearerH27k";
const ACTUATOR_SECRET: &str = "actSecretW55m";
const ACTUATOR_PASS: &str = "actPassJ20d";
const HOOK_PASS: &str = "hookPassL90v";
const HOOK_TOKEN: &str = "hookTokenP33t";
const SLACK_PATH: &str = "slackPathR48n";
const PD_SECRET: &str = "pdSecretU62x";
const PD_KEY: &str = "pdRoutingB19c";
const SMTP_PASS: &str = "smtpPassY07e";

/// Every planted secret (the API token included), with a name for the report.
const SECRETS: &[(&str, &str)] = &[
    ("Prometheus URL password", PROM_USER_PASS),
    ("Prometheus URL ?token=", PROM_QUERY_TOKEN),
    ("Prometheus bearer token file", PROM_BEARER),
    ("actuator URL ?secret=", ACTUATOR_SECRET),
    ("actuator URL password", ACTUATOR_PASS),
    ("webhook receiver URL password", HOOK_PASS),
    ("webhook receiver URL ?token=", HOOK_TOKEN),
    ("Slack URL (url_file) path", SLACK_PATH),
    ("PagerDuty URL ?secret=", PD_SECRET),
    ("PagerDuty routing_key_file", PD_KEY),
    ("SMTP password_file", SMTP_PASS),
    ("API token", ALICE),
];

/// `(secret, output)` for every planted secret found in one of `outputs`.
fn leaks(outputs: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (where_, text) in outputs {
        for (what, secret) in SECRETS {
            if text.contains(secret) {
                found.push(format!("{what} in {where_}"));
            }
        }
    }
    found
}

/// A server that fails every request with 500 and quotes it (method, path and query, the
/// Authorization header), as a misconfigured proxy does. Its base URL.
async fn serve_echo() -> String {
    let app = axum::Router::new().fallback(|uri: Uri, headers: HeaderMap| async move {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upstream refused request {uri} (authorization: {auth})"),
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A webhook receiver that records every body it gets. Its host:port.
async fn serve_inbox() -> (String, Arc<Mutex<Vec<String>>>) {
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |body: String| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// A rule for rollout `name` on `source` and `actuator`, routing every event to every receiver.
fn rule(name: &str, source: &str, actuator: &str) -> String {
    format!(
        r#"
[rollout]
name = "{name}"
team = "tests"
source = "{source}"
actuator = "{actuator}"
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
canary = "good"

[[checks]]
name = "latency"
kind = "absolute"
direction = "higher-is-worse"
threshold = 0.5
aggregate = "max"
query = 'latency_seconds{{ {{{{label}}}}="{{{{side}}}}" }}'
window = "5s"
min_samples = 2

[[routes]]
receivers = ["team", "slack", "pager", "mail"]
"#
    )
}

/// The config with every secret planted; the secret files are written into `dir`.
fn config(dir: &Path, echo: &str, prometheus: &str, inbox: &str, smtp_port: u16) -> String {
    let file = |name: &str, secret: &str| {
        let path = dir.join(name);
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        path.display().to_string()
    };
    let prom_token = file("prom.token", PROM_BEARER);
    let slack_url = file(
        "slack.url",
        &format!("{echo}/services/T000/B000/{SLACK_PATH}"),
    );
    let pd_key = file("pd.key", PD_KEY);
    let smtp_pass = file("smtp.pass", SMTP_PASS);
    let echo_host = echo.trim_start_matches("http://");
    let good_host = prometheus.trim_start_matches("http://");
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

[sources.echo]
kind = "prometheus"
url = "http://prom:{PROM_USER_PASS}@{echo_host}"
bearer_token_file = "{prom_token}"
timeout = "2s"
retries = 0

[sources.down]
kind = "prometheus"
url = "http://prom:{PROM_USER_PASS}@127.0.0.1:9/prometheus"
timeout = "2s"
retries = 0

[sources.good]
kind = "prometheus"
url = "http://prom:{PROM_USER_PASS}@{good_host}"
timeout = "2s"
retries = 0

[actuators.builtin]
kind = "builtin"

[actuators.hook]
kind = "webhook"
url = "http://act:{ACTUATOR_PASS}@{echo_host}/weights?rollout=x&secret={ACTUATOR_SECRET}"
timeout = "2s"
max_attempts = 1

[receivers.team]
kind = "webhook"
url = "http://hook:{HOOK_PASS}@{inbox}/notify?token={HOOK_TOKEN}"

[receivers.slack]
kind = "slack"
url_file = "{slack_url}"

[receivers.pager]
kind = "pagerduty"
url = "http://127.0.0.1:9/v2/enqueue?secret={PD_SECRET}"
routing_key_file = "{pd_key}"

[receivers.mail]
kind = "email"
to = ["team@example.com"]
from = "canaryd@example.com"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
tls = "none"
username = "canaryd"
password_file = "{smtp_pass}"
"#
    )
}

/// A `tracing` writer into a shared buffer: the logs of the daemon embedded on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn get_text(url: &str) -> String {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn history(base: &str, name: &str) -> String {
    get_text(&format!(
        "{base}/v1/rollouts/{name}/history?run=all&limit=100"
    ))
    .await
}

#[tokio::test(start_paused = true)]
async fn planted_secrets_appear_in_no_output_while_backends_actuators_and_receivers_fail() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let _ = test_clock();

    let smtp = SmtpServer::start(Options {
        auth: Some(("canaryd".into(), SMTP_PASS.into())),
        ..Options::default()
    });
    let echo = serve_echo().await;
    let prometheus = fake_prometheus().await;
    let (inbox, received) = serve_inbox().await;
    let dir = temp_dir("secrets");
    std::fs::write(
        dir.join("tokens"),
        format!(
            "alice admin {}\n",
            canaryd::tokens::hex(&canaryd::tokens::sha256(ALICE.as_bytes()))
        ),
    )
    .unwrap();
    let path = dir.join("canaryd.toml");
    std::fs::write(&path, config(&dir, &echo, &prometheus, &inbox, smtp.port)).unwrap();
    let rules = [
        ("echoed", "echo", "builtin"),
        ("unreachable", "down", "builtin"),
        ("hooked", "good", "hook"),
    ];
    for (name, source, actuator) in rules {
        std::fs::write(
            dir.join("rules").join(format!("{name}.toml")),
            rule(name, source, actuator),
        )
        .unwrap();
    }
    let daemon = embed(&path).await;
    let base = daemon.base.clone();

    // Both failing sources reach the alert (2 failures in a row); the actuator's first change
    // fails and pauses its rollout; the working receivers get notifications.
    for name in ["echoed", "unreachable"] {
        wait_for(
            "the backend-errors alert",
            Duration::from_secs(30),
            || async {
                history(&base, name)
                    .await
                    .contains("backend-errors")
                    .then_some(())
            },
        )
        .await;
    }
    wait_for(
        "the failed weight change",
        Duration::from_secs(30),
        || async {
            history(&base, "hooked")
                .await
                .contains("actuation-failed")
                .then_some(())
        },
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/rollouts/echoed/pause"))
        .bearer_auth(ALICE)
        .json(&serde_json::json!({"reason": "looking at the backend"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    wait_for(
        "the backend-errors notifications",
        Duration::from_secs(30),
        || async {
            let got = received.lock().unwrap();
            (got.iter().filter(|b| b.contains("backend-errors")).count() >= 2).then_some(())
        },
    )
    .await;
    let mail = wait_for("an email", Duration::from_secs(30), || async {
        let m = smtp.messages();
        m.iter().any(|m| m.contains("backend")).then_some(m)
    })
    .await;

    let mut outputs: Vec<(String, String)> = Vec::new();
    for page in ["/v1/rollouts", "/", "/metrics", "/readyz"] {
        outputs.push((page.to_string(), get_text(&format!("{base}{page}")).await));
    }
    for (name, _, _) in rules {
        for part in ["", "/analyses?run=all", "/runs", "/comparison"] {
            let page = format!("/v1/rollouts/{name}{part}");
            outputs.push((page.clone(), get_text(&format!("{base}{page}")).await));
        }
        outputs.push((format!("history of {name}"), history(&base, name).await));
        let page = format!("/rollouts/{name}");
        outputs.push((page.clone(), get_text(&format!("{base}{page}")).await));
    }
    for (i, body) in received.lock().unwrap().iter().enumerate() {
        outputs.push((format!("webhook notification {i}"), body.clone()));
    }
    for (i, m) in mail.iter().enumerate() {
        outputs.push((format!("email {i}"), m.clone()));
    }
    daemon.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), daemon.running).await;
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    outputs.push(("the logs".to_string(), logged.clone()));

    // The errors are there, still saying what failed and where (so the search below is not
    // vacuous), with their secrets replaced.
    let echoed = &outputs
        .iter()
        .find(|(w, _)| w == "history of echoed")
        .unwrap()
        .1;
    assert!(echoed.contains("HTTP 500"), "{echoed}");
    let unreachable = &outputs
        .iter()
        .find(|(w, _)| w == "history of unreachable")
        .unwrap()
        .1;
    assert!(unreachable.contains("127.0.0.1:9"), "{unreachable}");
    let hooked = &outputs
        .iter()
        .find(|(w, _)| w == "history of hooked")
        .unwrap()
        .1;
    assert!(hooked.contains("returned 500"), "{hooked}");
    assert!(logged.contains("Notification attempt failed"), "{logged}");

    let found = leaks(&outputs);
    assert!(
        found.is_empty(),
        "secrets leaked ({}):\n{}",
        found.len(),
        found.join("\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `canaryd check` on a config that repeats the secrets where it is wrong: it names every
/// problem without quoting a secret, and warns about credentials written into URLs.
#[test]
fn check_names_the_problems_of_secret_bearing_urls_without_quoting_them() {
    let dir = temp_dir("secrets-check");
    let config = format!(
        r#"
state_dir = "{d}/state"
rules_dir = "{d}/rules"

[sources.prometheus]
kind = "prometheus"
url = "http://prom:{PROM_USER_PASS}@127.0.0.1:9090/?token={PROM_QUERY_TOKEN}"

[actuators.hook]
kind = "webhook"
url = "ftp://act:{ACTUATOR_PASS}@127.0.0.1/weights?secret={ACTUATOR_SECRET}"

[receivers.team]
kind = "webhook"
url = "http://hook:{HOOK_PASS}@127.0.0.1:99999/notify?token={HOOK_TOKEN}"
"#,
        d = dir.display()
    );
    let path = dir.join("canaryd.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    for named in [
        "[sources.prometheus]",
        "[actuators.hook]",
        "receiver `team`",
    ] {
        assert!(text.contains(named), "{named} not named:\n{text}");
    }
    let found = leaks(&[("canaryd check".to_string(), text.clone())]);
    assert!(found.is_empty(), "{}\n{text}", found.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn check(config: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A valid config with credentials written into its URLs passes `canaryd check` with a warning
/// at each such URL, naming the setting that reads the secret from a file, and quoting none.
#[test]
fn check_warns_at_each_url_that_carries_credentials() {
    let dir = temp_dir("secrets-warn");
    let config = format!(
        r#"state_dir = "{d}/state"
rules_dir = "{d}/rules"

[sources.prometheus]
kind = "prometheus"
url = "http://prom:{PROM_USER_PASS}@127.0.0.1:9090"

[sources.plain]
kind = "prometheus"
url = "http://127.0.0.1:9090"

[actuators.hook]
kind = "webhook"
url = "http://127.0.0.1/weights?secret={ACTUATOR_SECRET}"

[receivers.team]
kind = "webhook"
url = "http://127.0.0.1/notify?token={HOOK_TOKEN}"
"#,
        d = dir.display()
    );
    let path = dir.join("canaryd.toml");
    std::fs::write(&path, config).unwrap();
    let (code, text) = check(&path);
    assert_eq!(code, Some(0), "{text}");
    // Each warning with its hint (printed on the next line).
    let lines: Vec<&str> = text.lines().collect();
    let warnings: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains(": warning: "))
        .map(|(i, l)| format!("{l} {}", lines.get(i + 1).unwrap_or(&"")))
        .collect();
    assert_eq!(warnings.len(), 3, "{text}");
    for (line, key, setting) in [
        (6, "sources.prometheus.url", "password_file"),
        (14, "actuators.hook.url", "bearer_token_file"),
        (18, "receivers.team.url", "bearer_token_file"),
    ] {
        let at = format!("canaryd.toml:{line}:");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&at) && w.contains(key) && w.contains(setting)),
            "no warning at line {line} for {key}:\n{text}"
        );
    }
    assert!(!text.contains("sources.plain"), "{text}");
    let found = leaks(&[("canaryd check".to_string(), text.clone())]);
    assert!(found.is_empty(), "{}\n{text}", found.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
