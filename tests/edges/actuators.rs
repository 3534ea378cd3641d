//! The actuators against real components: the builtin routes served over real HTTP, the webhook
//! against a real local HTTP server, the command actuator running real /bin/sh scripts, and the
//! file actuator writing real files. Everything binds to 127.0.0.1 and every wait is bounded.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use canaryd::actuator::{
    self, Actuator, ActuatorConfig, ActuatorError, BuiltinConfig, CommandConfig, Failure,
    FileConfig, FileFormat, WebhookConfig, WeightChange, WeightTable,
};
use canaryd::rollout::Targeting;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bound on any one step of a test.
const BOUND: Duration = Duration::from_secs(15);

async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}"))
}

fn change(rollout: &str, stage: &str, previous: u8, weight: u8, key: &str) -> WeightChange {
    WeightChange {
        rollout: rollout.to_owned(),
        stage: stage.to_owned(),
        weight,
        previous_weight: previous,
        reason: format!("advanced to stage {stage}"),
        idempotency_key: key.to_owned(),
    }
}

/// Serves `router` on 127.0.0.1 at a free port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{address}")
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "canaryd-actuators-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// builtin

fn builtin(table: &WeightTable) -> Arc<dyn Actuator> {
    actuator::build(
        "builtin",
        &ActuatorConfig::Builtin(BuiltinConfig::default()),
        table,
    )
    .unwrap()
}

async fn get_json(url: &str) -> (StatusCode, Value) {
    // One client for every request: building one loads the TLS roots each time.
    static CLIENT: std::sync::LazyLock<reqwest::Client> =
        std::sync::LazyLock::new(reqwest::Client::new);
    let response = bounded(url, CLIENT.get(url).send()).await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let body = bounded(url, response.json::<Value>()).await.unwrap();
    (status, body)
}

async fn variant(base: &str, rollout: &str, key: &str) -> (String, u64) {
    let (status, body) = get_json(&format!(
        "{base}/v1/rollouts/{rollout}/assignment?key={key}"
    ))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["variant"].as_str().unwrap().to_owned(),
        body["weight"].as_u64().unwrap(),
    )
}

#[tokio::test]
async fn builtin_assignment_is_sticky_as_the_weight_grows_from_10_to_25() {
    let table = WeightTable::new();
    table.register(
        "checkout",
        Targeting {
            salt: "checkout-v2".to_owned(),
            ..Targeting::default()
        },
    );
    let actuator = builtin(&table);
    let base = serve(actuator::builtin::routes(table.clone())).await;
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();

    bounded(
        "set 10",
        actuator.set_weight(&change("checkout", "canary-10", 0, 10, "k1")),
    )
    .await
    .unwrap();
    let mut at_10 = HashSet::new();
    for key in &keys {
        let (got, weight) = variant(&base, "checkout", key).await;
        assert_eq!(weight, 10);
        if got == "canary" {
            at_10.insert(key.clone());
        } else {
            assert_eq!(got, "baseline");
        }
        // Asking again gives the same answer.
        assert_eq!(variant(&base, "checkout", key).await.0, got);
    }

    bounded(
        "set 25",
        actuator.set_weight(&change("checkout", "canary-25", 10, 25, "k2")),
    )
    .await
    .unwrap();
    let mut at_25 = HashSet::new();
    for key in &keys {
        let (got, weight) = variant(&base, "checkout", key).await;
        assert_eq!(weight, 25);
        if got == "canary" {
            at_25.insert(key.clone());
        }
    }

    assert!(
        at_10.is_subset(&at_25),
        "users in the canary at 10% left it at 25%: {:?}",
        at_10.difference(&at_25).collect::<Vec<_>>()
    );
    // Roughly the configured share of 400 users (binomial, generous bounds).
    assert!((16..=64).contains(&at_10.len()), "{} at 10%", at_10.len());
    assert!((70..=130).contains(&at_25.len()), "{} at 25%", at_25.len());

    let (status, body) = get_json(&format!("{base}/v1/rollouts/checkout/weight")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rollout"], "checkout");
    assert_eq!(body["weight"], 25);
    assert_eq!(body["stage"], "canary-25");
    assert!(body["updated_at"].is_string(), "{body}");
}

#[tokio::test]
async fn builtin_assignment_honours_the_deny_and_allow_lists() {
    let table = WeightTable::new();
    table.register(
        "search",
        Targeting {
            allow: vec!["beta-tester".to_owned()],
            deny: vec!["big-customer".to_owned()],
            salt: "s".to_owned(),
        },
    );
    let actuator = builtin(&table);
    let base = serve(actuator::builtin::routes(table.clone())).await;

    // Before any change the weight is 0: even the allow list stays on the baseline.
    assert_eq!(
        variant(&base, "search", "beta-tester").await,
        ("baseline".to_owned(), 0)
    );

    bounded(
        "set 1",
        actuator.set_weight(&change("search", "canary-1", 0, 1, "a")),
    )
    .await
    .unwrap();
    assert_eq!(variant(&base, "search", "beta-tester").await.0, "canary");
    assert_eq!(variant(&base, "search", "big-customer").await.0, "baseline");

    bounded(
        "set 100",
        actuator.set_weight(&change("search", "full", 1, 100, "b")),
    )
    .await
    .unwrap();
    assert_eq!(
        variant(&base, "search", "big-customer").await,
        ("baseline".to_owned(), 100)
    );
    assert_eq!(variant(&base, "search", "anyone-else").await.0, "canary");
}

#[tokio::test]
async fn builtin_routes_answer_404_for_an_unknown_rollout_and_400_for_a_missing_key() {
    let table = WeightTable::new();
    table.register("checkout", Targeting::default());
    let base = serve(actuator::builtin::routes(table)).await;

    for url in [
        format!("{base}/v1/rollouts/nope/assignment?key=u1"),
        format!("{base}/v1/rollouts/nope/weight"),
    ] {
        let (status, body) = get_json(&url).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{url}");
        assert!(body["error"].as_str().unwrap().contains("`nope`"), "{body}");
    }
    for url in [
        format!("{base}/v1/rollouts/checkout/assignment"),
        format!("{base}/v1/rollouts/checkout/assignment?key="),
        format!("{base}/v1/rollouts/checkout/assignment?user=u1"),
    ] {
        let (status, body) = get_json(&url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
        assert!(body["error"].as_str().unwrap().contains("key"), "{body}");
    }
}

#[tokio::test]
async fn builtin_refuses_unregistered_rollouts_and_bad_weights_and_replays_are_no_ops() {
    let table = WeightTable::new();
    let actuator = builtin(&table);
    let err = bounded(
        "set",
        actuator.set_weight(&change("ghost", "s", 0, 10, "k")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.failure, Failure::UnknownRollout), "{err}");
    assert!(!err.retryable());
    assert!(
        err.to_string().contains("`builtin`") && err.to_string().contains("`ghost`"),
        "{err}"
    );

    table.register("checkout", Targeting::default());
    let err = bounded(
        "set",
        actuator.set_weight(&change("checkout", "s", 0, 150, "k")),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("150"), "{err}");
    assert_eq!(table.get("checkout").unwrap().weight, 0);

    let first = change("checkout", "canary-10", 0, 10, "same-key");
    bounded("set", actuator.set_weight(&first)).await.unwrap();
    let applied_at = table.get("checkout").unwrap().updated_at;
    bounded("replay", actuator.set_weight(&first))
        .await
        .unwrap();
    let entry = table.get("checkout").unwrap();
    assert_eq!((entry.weight, entry.updated_at), (10, applied_at));

    // A reload of the rule file keeps the weight.
    table.register(
        "checkout",
        Targeting {
            salt: "new".to_owned(),
            ..Targeting::default()
        },
    );
    assert_eq!(table.get("checkout").unwrap().weight, 10);
    assert!(table.remove("checkout"));
    assert!(table.get("checkout").is_none());
}

// ---------------------------------------------------------------------------------------------
// webhook

/// What the test's HTTP server received, and what it will answer.
#[derive(Default)]
struct Hook {
    /// Statuses to answer, in order; 200 once they run out.
    script: Mutex<VecDeque<u16>>,
    /// Bodies and headers received.
    received: Mutex<Vec<(Value, HeaderMap)>>,
    /// Delay before answering.
    delay: Mutex<Duration>,
}

impl Hook {
    fn received(&self) -> Vec<(Value, HeaderMap)> {
        self.received.lock().unwrap().clone()
    }
}

async fn hook_handler(
    State(hook): State<Arc<Hook>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let value: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    hook.received.lock().unwrap().push((value, headers));
    let delay = *hook.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let status = hook.script.lock().unwrap().pop_front().unwrap_or(200);
    let body = match status {
        400 => "weight 25 rejected: unknown backend pool `checkout`".to_owned(),
        500 => "x".repeat(5000),
        _ => "ok".to_owned(),
    };
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    if status == 429 {
        response
            .headers_mut()
            .insert("retry-after", "0".parse().unwrap());
    }
    response
}

async fn hook_server(script: &[u16]) -> (Arc<Hook>, String) {
    let hook = Arc::new(Hook::default());
    hook.script.lock().unwrap().extend(script);
    let router = Router::new()
        .route("/weights", post(hook_handler))
        .with_state(hook.clone());
    let base = serve(router).await;
    (hook, format!("{base}/weights"))
}

fn webhook(url: &str, edit: impl FnOnce(&mut WebhookConfig)) -> Arc<dyn Actuator> {
    let mut config = WebhookConfig::new(url);
    config.backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(50);
    config.timeout = Duration::from_secs(5);
    edit(&mut config);
    actuator::build("lb", &ActuatorConfig::Webhook(config), &WeightTable::new()).unwrap()
}

#[tokio::test]
async fn webhook_posts_the_change_as_json_with_headers() {
    let (hook, url) = hook_server(&[204]).await;
    let actuator = webhook(&url, |c| {
        c.headers = BTreeMap::from([("Authorization".to_owned(), "Bearer s3cret".to_owned())]);
    });
    let change = change("checkout", "canary-25", 10, 25, "checkout/3/canary-25");
    bounded("webhook", actuator.set_weight(&change))
        .await
        .unwrap();

    let received = hook.received();
    assert_eq!(received.len(), 1);
    let (body, headers) = &received[0];
    assert_eq!(
        body,
        &json!({
            "rollout": "checkout",
            "stage": "canary-25",
            "weight": 25,
            "previous_weight": 10,
            "reason": "advanced to stage canary-25",
            "idempotency_key": "checkout/3/canary-25",
        })
    );
    assert_eq!(headers["authorization"], "Bearer s3cret");
    assert_eq!(headers["idempotency-key"], "checkout/3/canary-25");
    assert_eq!(headers["content-type"], "application/json");
}

/// The bearer token from a file: sent on every change, a rotated one picked up, and masked
/// (with the URL's `?secret=`) in the error when the receiver refuses it and quotes it back.
#[tokio::test]
async fn webhook_sends_the_bearer_token_from_its_file_and_never_shows_it() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let router = Router::new().route(
        "/weights",
        post(move |headers: HeaderMap, uri: axum::http::Uri| {
            let log = log.clone();
            async move {
                let auth = headers["authorization"].to_str().unwrap().to_owned();
                log.lock().unwrap().push(auth.clone());
                if auth.ends_with("rotated-tok3n") {
                    let body = format!("{auth} is not accepted at {uri}");
                    return (StatusCode::UNAUTHORIZED, body);
                }
                (StatusCode::OK, "ok".to_owned())
            }
        }),
    );
    let url = format!("{}/weights?secret=urlSecr3t", serve(router).await);
    let dir = TempDir::new("token");
    let token_file = dir.path().join("hook.token");
    std::fs::write(&token_file, "first-tok3n\n").unwrap();
    let path = token_file.clone();
    let actuator = webhook(&url, move |c| c.bearer_token_file = Some(path));
    bounded(
        "webhook",
        actuator.set_weight(&change("checkout", "s", 0, 10, "k1")),
    )
    .await
    .unwrap();
    std::fs::write(&token_file, "rotated-tok3n").unwrap();
    let err = bounded(
        "webhook",
        actuator.set_weight(&change("checkout", "s", 10, 25, "k2")),
    )
    .await
    .unwrap_err();
    assert_eq!(
        *seen.lock().unwrap(),
        ["Bearer first-tok3n", "Bearer rotated-tok3n"]
    );
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("401") && shown.contains("is not accepted"),
        "{shown}"
    );
    for secret in ["rotated-tok3n", "urlSecr3t"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // A token file that is gone fails the change for good, naming the file, not the token.
    drop(dir);
    let err = bounded(
        "webhook",
        actuator.set_weight(&change("checkout", "s", 10, 25, "k3")),
    )
    .await
    .unwrap_err();
    assert!(!err.retryable());
    assert!(err.to_string().contains("bearer_token_file"), "{err}");
}

#[tokio::test]
async fn webhook_retries_a_500_and_succeeds_on_the_200_with_the_same_key() {
    let (hook, url) = hook_server(&[500, 429, 200]).await;
    let actuator = webhook(&url, |_| {});
    bounded(
        "webhook",
        actuator.set_weight(&change("checkout", "s", 0, 10, "key-1")),
    )
    .await
    .unwrap();
    let received = hook.received();
    assert_eq!(received.len(), 3);
    for (body, headers) in &received {
        assert_eq!(body["idempotency_key"], "key-1");
        assert_eq!(headers["idempotency-key"], "key-1");
    }
}

#[tokio::test]
async fn webhook_does_not_retry_a_400_and_reports_status_and_body() {
    let (hook, url) = hook_server(&[400]).await;
    let actuator = webhook(&url, |_| {});
    let err = bounded(
        "webhook",
        actuator.set_weight(&change("checkout", "s", 10, 25, "k")),
    )
    .await
    .unwrap_err();
    assert_eq!(hook.received().len(), 1);
    assert!(!err.retryable());
    assert!(
        matches!(
            err.failure,
            Failure::Status {
                status: 400,
                attempts: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("`lb`"), "{message}");
    assert!(message.contains("400"), "{message}");
    assert!(
        message.contains("unknown backend pool `checkout`"),
        "{message}"
    );
}

#[tokio::test]
async fn webhook_gives_up_after_max_attempts_with_a_short_body_excerpt() {
    let (hook, url) = hook_server(&[500, 500, 500, 500]).await;
    let actuator = webhook(&url, |c| c.max_attempts = 3);
    let err = bounded(
        "webhook",
        actuator.set_weight(&change("checkout", "s", 0, 10, "k")),
    )
    .await
    .unwrap_err();
    assert_eq!(hook.received().len(), 3);
    assert!(err.retryable());
    assert!(
        matches!(
            err.failure,
            Failure::Status {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    // The 5000-byte body is cut.
    assert!(err.to_string().len() < 1000, "{}", err.to_string().len());
}

#[tokio::test]
async fn webhook_times_out_on_a_slow_server() {
    let (hook, url) = hook_server(&[]).await;
    *hook.delay.lock().unwrap() = Duration::from_secs(10);
    let actuator = webhook(&url, |c| {
        c.timeout = Duration::from_millis(200);
        c.max_attempts = 2;
    });
    let err = bounded(
        "webhook",
        actuator.set_weight(&change("checkout", "s", 0, 10, "k")),
    )
    .await
    .unwrap_err();
    assert!(err.retryable(), "{err}");
    assert!(
        matches!(
            err.failure,
            Failure::Request {
                attempts: 2,
                transient: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(hook.received().len(), 2);
}

#[tokio::test]
async fn webhook_reports_a_refused_connection_as_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/weights", listener.local_addr().unwrap());
    drop(listener);
    let actuator = webhook(&url, |c| c.max_attempts = 2);
    let err = bounded(
        "webhook",
        actuator.set_weight(&change("checkout", "s", 0, 10, "k")),
    )
    .await
    .unwrap_err();
    assert!(err.retryable(), "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

// ---------------------------------------------------------------------------------------------
// command

fn script(dir: &TempDir, name: &str, body: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    path.to_string_lossy().into_owned()
}

fn command(argv: &[&str], timeout: Duration, env: &[(&str, &Path)]) -> Arc<dyn Actuator> {
    let mut config = CommandConfig::new(argv.iter().copied());
    config.timeout = timeout;
    config.env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string_lossy().into_owned()))
        .collect();
    actuator::build(
        "script",
        &ActuatorConfig::Command(config),
        &WeightTable::new(),
    )
    .unwrap()
}

#[tokio::test]
async fn command_receives_the_change_in_its_environment_and_argv() {
    let dir = TempDir::new("command-env");
    let out = dir.path().join("env.txt");
    let script = script(
        &dir,
        "set-weight.sh",
        r#"env | grep '^CANARYD_' | sort > "$OUT"; echo "arg=$1" >> "$OUT"; echo done"#,
    );
    let actuator = command(
        &["/bin/sh", &script, "two words; rm -rf /"],
        Duration::from_secs(10),
        &[("OUT", &out)],
    );
    let mut change = change("checkout", "canary-25", 10, 25, "checkout/3");
    change.reason = "advanced: 3 passing analyses".to_owned();
    bounded("command", actuator.set_weight(&change))
        .await
        .unwrap();

    let written = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(
        lines,
        [
            "CANARYD_IDEMPOTENCY_KEY=checkout/3",
            "CANARYD_PREVIOUS_WEIGHT=10",
            "CANARYD_REASON=advanced: 3 passing analyses",
            "CANARYD_ROLLOUT=checkout",
            "CANARYD_STAGE=canary-25",
            "CANARYD_WEIGHT=25",
            "arg=two words; rm -rf /",
        ]
    );
}

fn expect_failed(err: &ActuatorError) -> (Option<i32>, &str) {
    match &err.failure {
        Failure::CommandFailed {
            code, stderr_tail, ..
        } => (*code, stderr_tail.as_str()),
        other => panic!("expected a failed command, got {other:?}"),
    }
}

#[tokio::test]
async fn command_exit_3_is_an_error_with_the_code_and_stderr() {
    let dir = TempDir::new("command-exit");
    let fail = script(
        &dir,
        "fail.sh",
        "echo 'progress...'; echo 'error: cluster eu-1 unreachable' >&2; exit 3",
    );
    let actuator = command(&["/bin/sh", &fail], Duration::from_secs(10), &[]);
    let err = bounded(
        "command",
        actuator.set_weight(&change("checkout", "s", 0, 10, "k")),
    )
    .await
    .unwrap_err();
    let (code, stderr) = expect_failed(&err);
    assert_eq!(code, Some(3));
    assert_eq!(stderr, "error: cluster eu-1 unreachable");
    assert!(!err.retryable());
    let message = err.to_string();
    assert!(message.contains("exited with code 3"), "{message}");
    assert!(message.contains("cluster eu-1 unreachable"), "{message}");

    // EX_TEMPFAIL asks for a retry.
    let tempfail = script(&dir, "tempfail.sh", "exit 75");
    let actuator = command(&["/bin/sh", &tempfail], Duration::from_secs(10), &[]);
    let err = bounded(
        "command",
        actuator.set_weight(&change("checkout", "s", 0, 10, "k")),
    )
    .await
    .unwrap_err();
    assert_eq!(expect_failed(&err), (Some(75), "(empty)"));
    assert!(err.retryable());
}

/// Whether `pid` has exited (gone, or a zombie nobody has reaped yet).
fn exited(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test]
async fn command_that_outlives_its_timeout_is_killed_with_what_it_started() {
    let dir = TempDir::new("command-timeout");
    let script = script(
        &dir,
        "hang.sh",
        r#"echo $$ > "$DIR/sh.pid"; sleep 30 & echo $! > "$DIR/sleep.pid"; wait"#,
    );
    let actuator = command(
        &["/bin/sh", &script],
        Duration::from_millis(500),
        &[("DIR", dir.path())],
    );
    let err = bounded(
        "command",
        actuator.set_weight(&change("checkout", "s", 0, 10, "k")),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err.failure, Failure::CommandTimeout { .. }),
        "{err:?}"
    );
    assert!(err.retryable());
    assert!(err.to_string().contains("killed"), "{err}");

    for pid_file in ["sh.pid", "sleep.pid"] {
        let pid = std::fs::read_to_string(dir.path().join(pid_file)).unwrap();
        let pid = pid.trim();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !exited(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(exited(pid), "{pid_file} ({pid}) is still running");
    }
}

#[tokio::test]
async fn command_that_cannot_start_names_the_program() {
    let actuator = command(&["/nonexistent/set-weight"], Duration::from_secs(5), &[]);
    let err = bounded(
        "command",
        actuator.set_weight(&change("checkout", "s", 0, 10, "k")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err.failure, Failure::Spawn { .. }), "{err:?}");
    assert!(!err.retryable());
    assert!(err.to_string().contains("/nonexistent/set-weight"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// file

fn file_actuator(template: &Path, format: FileFormat) -> Arc<dyn Actuator> {
    let config = FileConfig::new(template.to_string_lossy(), format);
    actuator::build(
        "weights",
        &ActuatorConfig::File(config),
        &WeightTable::new(),
    )
    .unwrap()
}

#[tokio::test]
async fn file_writes_json_per_rollout() {
    let dir = TempDir::new("file-json");
    let actuator = file_actuator(&dir.path().join("{rollout}.json"), FileFormat::Json);
    bounded(
        "file",
        actuator.set_weight(&change("checkout", "canary-25", 10, 25, "k")),
    )
    .await
    .unwrap();
    bounded(
        "file",
        actuator.set_weight(&change("search", "canary-5", 0, 5, "k")),
    )
    .await
    .unwrap();

    assert_eq!(dir.entries(), ["checkout.json", "search.json"]);
    let text = std::fs::read_to_string(dir.path().join("checkout.json")).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    let object = value.as_object().unwrap();
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["rollout", "stage", "updated_at", "weight"]
    );
    assert_eq!(value["rollout"], "checkout");
    assert_eq!(value["weight"], 25);
    assert_eq!(value["stage"], "canary-25");
    let updated_at = value["updated_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(updated_at).unwrap();
}

#[tokio::test]
async fn file_writes_key_value_lines() {
    let dir = TempDir::new("file-env");
    let actuator = file_actuator(&dir.path().join("{rollout}.env"), FileFormat::Env);
    bounded(
        "file",
        actuator.set_weight(&change("checkout", "stage two", 10, 25, "k")),
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("checkout.env")).unwrap();
    let lines: BTreeMap<&str, &str> = text
        .lines()
        .map(|line| line.split_once('=').unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines["CANARYD_ROLLOUT"], "checkout");
    assert_eq!(lines["CANARYD_WEIGHT"], "25");
    assert_eq!(lines["CANARYD_STAGE"], "\"stage two\"");
    chrono::DateTime::parse_from_rfc3339(lines["CANARYD_UPDATED_AT"]).unwrap();

    // /bin/sh reads it back as written.
    let output = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#". "$1"; printf '%s|%s' "$CANARYD_STAGE" "$CANARYD_WEIGHT""#)
        .arg("sh")
        .arg(dir.path().join("checkout.env"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "stage two|25");
}

#[tokio::test]
async fn file_replaces_atomically_and_leaves_no_temporary_files() {
    let dir = TempDir::new("file-atomic");
    let target = dir.path().join("checkout.json");
    let actuator = file_actuator(&dir.path().join("{rollout}.json"), FileFormat::Json);
    bounded(
        "file",
        actuator.set_weight(&change("checkout", "s", 0, 1, "k0")),
    )
    .await
    .unwrap();

    // A reader polling the file while it is replaced must always see one whole JSON document.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let target = target.clone();
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !done.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&target).expect("the file is always there");
                let value: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("torn read {text:?}: {e}"));
                assert!(
                    value["weight"]
                        .as_u64()
                        .is_some_and(|w| (1..=100).contains(&w))
                );
                reads += 1;
            }
            reads
        })
    };
    for weight in 2..=100u8 {
        let change = change("checkout", "s", weight - 1, weight, &format!("k{weight}"));
        bounded("file", actuator.set_weight(&change)).await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);

    let value: Value = serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(value["weight"], 100);
    assert_eq!(dir.entries(), ["checkout.json"]);
}

#[tokio::test]
async fn file_in_a_missing_or_unusable_directory_is_a_clear_error_naming_the_path() {
    let dir = TempDir::new("file-unwritable");
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "x").unwrap();

    for parent in [dir.path().join("missing"), not_a_dir] {
        let actuator = file_actuator(&parent.join("{rollout}.json"), FileFormat::Json);
        let err = bounded(
            "file",
            actuator.set_weight(&change("checkout", "s", 0, 10, "k")),
        )
        .await
        .unwrap_err();
        let target = parent.join("checkout.json");
        assert!(
            err.to_string().contains(&*target.to_string_lossy()),
            "{err} does not name {}",
            target.display()
        );
        assert!(matches!(err.failure, Failure::Io { .. }), "{err:?}");
        assert!(!err.retryable(), "{err}");
    }
    assert_eq!(dir.entries(), ["plain-file"]);
}

#[test]
fn build_reports_every_problem_in_a_bad_config() {
    let config: ActuatorConfig = toml::from_str(
        r#"
        kind = "command"
        argv = []
        timeout = "0s"
        env = { CANARYD_WEIGHT = "7" }
        "#,
    )
    .unwrap();
    let err = actuator::build("script", &config, &WeightTable::new()).unwrap_err();
    assert_eq!(err.actuator, "script");
    assert_eq!(err.problems.len(), 3, "{err}");
    let message = err.to_string();
    for part in ["argv is empty", "timeout", "CANARYD_WEIGHT"] {
        assert!(message.contains(part), "{message}");
    }
}
