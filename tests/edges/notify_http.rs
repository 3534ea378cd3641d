//! The HTTP receivers (Slack-style webhook, generic webhook, PagerDuty Events v2) against a real
//! HTTP server on 127.0.0.1, and the dispatcher's faults: retryable answers retried then
//! delivered once, a 400 failed for good, a receiver down for a while, and a dispatcher killed
//! with SIGKILL mid-send whose messages a restarted dispatcher delivers exactly once each.
//!
//! The killed dispatcher is this test binary re-executed in child mode (the ignored test
//! `dispatcher_child`, selected with an environment variable).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{TimeZone, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use canaryd::notify::{
    DispatchSettings, Dispatcher, IncidentAction, Notification, ReceiverConfig, Receivers,
    StageInfo, dedupe_key, outbox_messages,
};
use canaryd::rollout::{EventKind, Severity};
use canaryd::rules::Route;
use canaryd::store::{MessageStatus, Store};

const CHILD_DIR: &str = "CANARYD_NOTIFY_CHILD_DIR";
const CHILD_URL: &str = "CANARYD_NOTIFY_CHILD_URL";

// ----- the receiving end -----

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct SinkState {
    /// Answers for the next requests (status, Retry-After); then 200.
    script: VecDeque<(u16, Option<u64>)>,
    /// Read requests and never answer.
    hang: bool,
    /// Every request read.
    received: Vec<Received>,
    /// Requests answered with a 2xx.
    delivered: Vec<Received>,
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<SinkState>>);

impl Sink {
    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.0.lock().unwrap()
    }
    fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }
    fn delivered(&self) -> Vec<Received> {
        self.lock().delivered.clone()
    }

    /// Serves on `listener` until the runtime ends.
    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new().fallback(handle).with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
    }

    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        self.serve(listener);
        format!("http://{addr}")
    }
}

async fn handle(State(sink): State<Sink>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request = Received {
        path: uri.path().to_string(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let (hang, answer) = {
        let mut s = sink.lock();
        s.received.push(request.clone());
        (s.hang, s.script.pop_front())
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let (status, retry_after) = answer.unwrap_or((200, None));
    if (200..300).contains(&status) {
        sink.lock().delivered.push(request);
    }
    let mut response = (StatusCode::from_u16(status).unwrap(), "answer").into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

// ----- helpers -----

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("canaryd-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn notification(event: EventKind, severity: Severity, incident: IncidentAction) -> Notification {
    Notification {
        scope: canaryd::notify::Scope::Rollout,
        rollout: "web".into(),
        team: "payments".into(),
        event,
        severity,
        incident,
        group_key: "canaryd/web/1740830400000".into(),
        at: Utc.with_ymd_and_hms(2025, 3, 1, 12, 5, 0).unwrap(),
        message: "Rollout paused at stage 2 `c25` (25%) for review: check `latency` failing".into(),
        phase: "paused".into(),
        stage: Some(StageInfo {
            number: 2,
            of: 3,
            name: "c25".into(),
            weight: 25,
        }),
        weight: 25,
        checks: vec![],
        status_url: Some("https://canaryd.example.com/rollouts/web".into()),
        commands: vec!["canaryd resume web".into(), "canaryd rollback web".into()],
    }
}

/// Informational notifications, each its own message.
fn numbered(i: i64) -> Notification {
    let mut n = notification(
        EventKind::StageAdvanced,
        Severity::Info,
        IncidentAction::None,
    );
    n.at += chrono::Duration::seconds(i);
    n.message = format!("Advanced ({i})");
    n
}

fn webhook(url: &str) -> ReceiverConfig {
    toml::from_str(&format!(
        "kind = \"webhook\"\nurl = \"{url}/hook\"\ntimeout = \"2s\"\n"
    ))
    .unwrap()
}

fn receivers(name: &str, config: ReceiverConfig) -> Receivers {
    Receivers::build(&BTreeMap::from([(name.to_string(), config)])).expect("builds")
}

fn enqueue(store: &Store, receiver: &str, n: &Notification) -> String {
    let routes = vec![Route {
        receivers: vec![receiver.into()],
        events: vec![n.event],
        min_severity: Severity::Info,
    }];
    let message = outbox_messages(&routes, n, 0).unwrap().remove(0);
    store
        .enqueue(&message, Utc::now())
        .unwrap()
        .expect("new message");
    message.dedupe_key
}

/// Past the lease (2 s), the longest backoff and a hundred polls: a message delivered but not
/// recorded as sent, or claimed twice, would have gone out again by then.
const PAST_THE_LEASE: Duration = Duration::from_secs(3);

fn fast() -> DispatchSettings {
    DispatchSettings {
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(2),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        max_attempts: 50,
        ..DispatchSettings::default()
    }
}

/// Poll `done` every 10 ms of tokio's time, at most `limit` of it (the dispatcher's time, on
/// paused time).
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Running {
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn run(store: &Store, receivers: Receivers) -> Running {
    let token = CancellationToken::new();
    // On the test's time: with paused time, leases, backoffs and polls move only as it does.
    let clock = canaryd::clock::Clock::following_tokio(Utc::now());
    let dispatcher = Dispatcher::with_clock(store.clone(), receivers, fast(), clock);
    let task = tokio::spawn(dispatcher.run(token.clone()));
    Running { token, task }
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the dispatcher stops")
            .unwrap();
    }
}

fn keys(requests: &[Received]) -> Vec<String> {
    let mut keys: Vec<String> = requests
        .iter()
        .map(|r| r.body["idempotency_key"].as_str().unwrap_or("").to_string())
        .collect();
    keys.sort();
    keys
}

// ----- payload shapes -----

#[tokio::test]
async fn slack_webhook_and_pagerduty_payload_shapes() {
    let sink = Sink::default();
    let url = sink.start().await;
    let dir = TempDir::new("http-shapes");
    let key_file = dir.0.join("pd.key");
    std::fs::write(&key_file, "R0UTINGKEY\n").unwrap();
    let token_file = dir.0.join("hook.token");
    std::fs::write(&token_file, "t0ken").unwrap();

    let slack: ReceiverConfig = toml::from_str(&format!(
        "kind = \"slack\"\nurl = \"{url}/slack/T1/B2/XYZ\"\n"
    ))
    .unwrap();
    let hook: ReceiverConfig = toml::from_str(&format!(
        "kind = \"webhook\"\nurl = \"{url}/hook\"\nheaders = {{ X-Tenant = \"payments\" }}\n\
         bearer_token_file = {:?}\n",
        token_file.display().to_string()
    ))
    .unwrap();
    let pager: ReceiverConfig = toml::from_str(&format!(
        "kind = \"pagerduty\"\nurl = \"{url}/v2/enqueue\"\nrouting_key_file = {:?}\n",
        key_file.display().to_string()
    ))
    .unwrap();
    let paused = notification(
        EventKind::Paused,
        Severity::Warning,
        IncidentAction::Trigger,
    );
    let resumed = notification(EventKind::Resumed, Severity::Info, IncidentAction::Resolve);

    slack.build("s").unwrap().send(&paused, "k1").await.unwrap();
    hook.build("h").unwrap().send(&paused, "k2").await.unwrap();
    let pd = pager.build("p").unwrap();
    pd.send(&paused, "k3").await.unwrap();
    pd.send(&resumed, "k4").await.unwrap();

    let got = sink.delivered();
    assert_eq!(got.len(), 4);
    let (s, h, trigger, resolve) = (&got[0], &got[1], &got[2], &got[3]);

    assert_eq!(s.path, "/slack/T1/B2/XYZ");
    assert!(
        s.body["text"]
            .as_str()
            .unwrap()
            .starts_with("[canaryd] WARNING web: Rollout paused")
    );
    let blocks = s.body["blocks"].as_array().unwrap();
    assert!(
        blocks
            .iter()
            .any(|b| b.to_string().contains("canaryd resume web"))
    );

    assert_eq!(h.path, "/hook");
    assert_eq!(h.headers["idempotency-key"], "k2");
    assert_eq!(h.headers["authorization"], "Bearer t0ken");
    assert_eq!(h.headers["x-tenant"], "payments");
    assert_eq!(h.body["version"], 1);
    assert_eq!(h.body["idempotency_key"], "k2");
    assert_eq!(h.body["notification"]["event"], "paused");
    assert_eq!(h.body["notification"]["incident"], "trigger");
    assert_eq!(h.body["notification"]["stage"]["name"], "c25");

    assert_eq!(trigger.path, "/v2/enqueue");
    assert_eq!(trigger.body["routing_key"], "R0UTINGKEY");
    assert_eq!(trigger.body["event_action"], "trigger");
    assert_eq!(trigger.body["dedup_key"], "canaryd/web/1740830400000");
    let payload = &trigger.body["payload"];
    assert_eq!(payload["severity"], "warning");
    assert_eq!(payload["source"], "canaryd");
    assert!(payload["summary"].as_str().unwrap().contains("web"));
    assert_eq!(payload["custom_details"]["rollout"], "web");
    assert_eq!(resolve.body["event_action"], "resolve");
    assert_eq!(resolve.body["dedup_key"], "canaryd/web/1740830400000");
}

// ----- retries and permanent failures through the dispatcher -----

#[tokio::test(start_paused = true)]
async fn server_errors_and_429_are_retried_then_delivered_once() {
    let sink = Sink::default();
    sink.lock()
        .script
        .extend([(500, None), (429, Some(0)), (503, None)]);
    let url = sink.start().await;
    let dir = TempDir::new("http-retry");
    let store = Store::open(&dir.0).unwrap();
    let n = notification(
        EventKind::Paused,
        Severity::Warning,
        IncidentAction::Trigger,
    );
    let key = enqueue(&store, "ops-hook", &n);
    let running = run(&store, receivers("ops-hook", webhook(&url)));
    until("sent", Duration::from_secs(10), || {
        store.outbox_counts().unwrap().sent == 1
    })
    .await;
    tokio::time::sleep(PAST_THE_LEASE).await;
    running.stop().await;

    assert_eq!(sink.received().len(), 4, "three failures and the delivery");
    assert_eq!(keys(&sink.delivered()), vec![key.clone()], "delivered once");
    let m = store.message_by_dedupe_key(&key).unwrap().unwrap();
    assert_eq!((m.status, m.attempts), (MessageStatus::Sent, 4));
}

#[tokio::test(start_paused = true)]
async fn bad_request_fails_for_good() {
    let sink = Sink::default();
    sink.lock().script.push_back((400, None));
    let url = sink.start().await;
    let dir = TempDir::new("http-400");
    let store = Store::open(&dir.0).unwrap();
    let n = notification(
        EventKind::Paused,
        Severity::Warning,
        IncidentAction::Trigger,
    );
    let key = enqueue(&store, "ops-hook", &n);
    let running = run(&store, receivers("ops-hook", webhook(&url)));
    until("failed", Duration::from_secs(10), || {
        store.outbox_counts().unwrap().failed == 1
    })
    .await;
    tokio::time::sleep(PAST_THE_LEASE).await;
    running.stop().await;

    assert_eq!(sink.received().len(), 1, "not retried");
    let m = store.message_by_dedupe_key(&key).unwrap().unwrap();
    assert_eq!((m.status, m.attempts), (MessageStatus::Failed, 1));
    let error = m.last_error.unwrap();
    assert!(
        error.contains("permanent error") && error.contains("HTTP 400"),
        "{error}"
    );
}

// ----- faults -----

#[tokio::test(start_paused = true)]
async fn receiver_down_for_a_while_gets_each_message_once_when_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = TempDir::new("http-down");
    let store = Store::open(&dir.0).unwrap();
    let keys_sent: Vec<String> = (0..3)
        .map(|i| enqueue(&store, "ops-hook", &numbered(i)))
        .collect();
    let running = run(&store, receivers("ops-hook", webhook(&url)));
    // Connection refused, a few times over.
    until(
        "three failed attempts each",
        Duration::from_secs(20),
        || {
            keys_sent.iter().all(|k| {
                store
                    .message_by_dedupe_key(k)
                    .unwrap()
                    .is_some_and(|m| m.attempts >= 3 && m.last_error.is_some())
            })
        },
    )
    .await;
    let m = store.message_by_dedupe_key(&keys_sent[0]).unwrap().unwrap();
    assert_eq!(m.status, MessageStatus::Pending);
    assert!(m.last_error.unwrap().contains("cannot connect"));

    let sink = Sink::default();
    sink.serve(
        tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap(),
    );
    until("all sent", Duration::from_secs(10), || {
        store.outbox_counts().unwrap().sent == 3
    })
    .await;
    tokio::time::sleep(PAST_THE_LEASE).await;
    running.stop().await;

    let mut want = keys_sent.clone();
    want.sort();
    assert_eq!(keys(&sink.received()), want, "each message exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of sigkilled_dispatcher_loses_nothing_and_sends_each_once"]
async fn dispatcher_child() {
    let dir = std::env::var_os(CHILD_DIR).expect("CANARYD_NOTIFY_CHILD_DIR names the state dir");
    let url = std::env::var(CHILD_URL).expect("CANARYD_NOTIFY_CHILD_URL names the receiver");
    let store = Store::open(Path::new(&dir)).unwrap();
    println!("RUNNING");
    // Runs until killed.
    Dispatcher::new(store, receivers("ops-hook", webhook(&url)), fast())
        .run(CancellationToken::new())
        .await;
}

// On the machine's time while the child runs (a real process), then on paused time.
#[tokio::test]
async fn sigkilled_dispatcher_loses_nothing_and_sends_each_once() {
    let sink = Sink::default();
    sink.lock().hang = true;
    let url = sink.start().await;
    let dir = TempDir::new("http-kill");
    let store = Store::open(&dir.0).unwrap();
    let mut want: Vec<String> = (0..3)
        .map(|i| enqueue(&store, "ops-hook", &numbered(i)))
        .collect();
    want.sort();
    // The database is one process's at a time: the child's while it runs.
    drop(store);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(crate::harness_name(module_path!(), "dispatcher_child"))
        .args(["--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR, &dir.0)
        .env(CHILD_URL, &url)
        .stdout(Stdio::null())
        .spawn()
        .expect("start the child dispatcher");
    // Every message claimed and in flight: the receiver has read them but not answered.
    let seen = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let keys: BTreeSet<String> = keys(&sink.received()).into_iter().collect();
            if keys.len() == 3 {
                break keys;
            }
            if Instant::now() >= deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("the child dispatcher never sent all three (saw {keys:?})");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), want);
    let store = Store::open(&dir.0).unwrap();
    let counts = store.outbox_counts().unwrap();
    assert_eq!(
        (counts.pending, counts.sent),
        (3, 0),
        "nothing recorded as sent"
    );
    assert!(sink.delivered().is_empty());

    // A new dispatcher on the same store, the receiver answering again, on controlled time from
    // here on (the child's leases run out on it).
    tokio::time::pause();
    sink.lock().hang = false;
    let running = run(&store, receivers("ops-hook", webhook(&url)));
    until(
        "all sent after the restart",
        Duration::from_secs(20),
        || store.outbox_counts().unwrap().sent == 3,
    )
    .await;
    tokio::time::sleep(PAST_THE_LEASE).await;
    running.stop().await;
    assert_eq!(keys(&sink.delivered()), want, "each delivered exactly once");
    for key in &want {
        let m = store.message_by_dedupe_key(key).unwrap().unwrap();
        assert_eq!(m.status, MessageStatus::Sent);
    }
}

#[test]
fn dedupe_keys_are_stable_per_message() {
    // The idempotency key a receiver sees is the outbox dedupe key: the same on every attempt.
    let n = numbered(7);
    assert_eq!(
        dedupe_key(&n, "ops-hook", 0),
        dedupe_key(&n.clone(), "ops-hook", 0)
    );
    assert_ne!(dedupe_key(&n, "ops-hook", 0), dedupe_key(&n, "ops-hook", 1));
}
