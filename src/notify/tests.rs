//! Unit tests of the pure parts (routing, grouping, content, backoff, buckets, errors, config)
//! and of the dispatcher against a real store with in-memory notifiers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};

use super::dispatch::backoff;
use super::rate::RateLimit;
use super::*;
use crate::judge::{CheckKind, CheckSpec, Direction, Point, SideData, judge_check};
use crate::rollout::{
    Command as Cmd, Event, EventKind, Plan, RollbackTarget, RolloutState, Severity, Stage,
    TriggeredBy, step,
};
use crate::rules::Route;
use crate::store::{MessageStatus, Store};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn route(receivers: &[&str], events: &[EventKind], min: Severity) -> Route {
    Route {
        receivers: receivers.iter().map(|r| r.to_string()).collect(),
        events: events.to_vec(),
        min_severity: min,
    }
}

fn all_events() -> Vec<EventKind> {
    crate::rules::model::EVENT_KINDS
        .iter()
        .map(|(_, k)| *k)
        .collect()
}

// ----- routing -----

#[test]
fn routing_table() {
    use EventKind::*;
    use Severity::*;
    let routes = vec![
        route(&["team-email", "team-slack"], &all_events(), Info),
        route(
            &["pager", "team-email"],
            &[RolledBack, Paused, EmergencyStop],
            Warning,
        ),
        route(&["ops-hook"], &[StageAdvanced, Succeeded], Info),
    ];
    let cases: &[(EventKind, Severity, &[&str])] = &[
        // Everything goes to the team, each receiver once even when two routes name it.
        (
            StageAdvanced,
            Info,
            &["team-email", "team-slack", "ops-hook"],
        ),
        (RolledBack, Critical, &["team-email", "team-slack", "pager"]),
        (Paused, Warning, &["team-email", "team-slack", "pager"]),
        // Below the pager route's minimum severity.
        (Started, Info, &["team-email", "team-slack"]),
        // Not among the pager route's events.
        (CheckFailed, Warning, &["team-email", "team-slack"]),
        // Resolves reach every receiver that could have been paged, whatever their severity.
        (Resumed, Info, &["team-email", "team-slack", "pager"]),
        (RolledBack, Info, &["team-email", "team-slack", "pager"]),
        (Aborted, Warning, &["team-email", "team-slack", "pager"]),
        // Clearing an emergency stop leaves the rollout paused: information only.
        (EmergencyCleared, Info, &["team-email", "team-slack"]),
    ];
    for (event, severity, want) in cases {
        assert_eq!(
            receivers_for(&routes, *event, *severity),
            want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{event:?} {severity:?}"
        );
    }
}

#[test]
fn routing_without_routes_or_matches_is_empty() {
    assert!(receivers_for(&[], EventKind::RolledBack, Severity::Critical).is_empty());
    let routes = vec![route(
        &["pager"],
        &[EventKind::RolledBack],
        Severity::Critical,
    )];
    assert!(receivers_for(&routes, EventKind::Paused, Severity::Critical).is_empty());
    assert!(receivers_for(&routes, EventKind::RolledBack, Severity::Warning).is_empty());
    // A pager that only hears critical rollbacks still hears the resolve of its incident.
    assert_eq!(
        receivers_for(&routes, EventKind::Resumed, Severity::Info),
        vec!["pager"]
    );
}

#[test]
fn incident_actions_table() {
    use EventKind::*;
    use IncidentAction as A;
    use Severity::*;
    let cases = [
        (Paused, Warning, A::Trigger),
        (RolledBack, Critical, A::Trigger),
        (RolledBack, Info, A::Resolve),
        (Resumed, Info, A::Resolve),
        (Aborted, Warning, A::Resolve),
        (EmergencyStop, Critical, A::Trigger),
        (CheckFailed, Warning, A::Trigger),
        (CheckFailed, Info, A::None), // dry run
        (InconclusiveStreak, Warning, A::Trigger),
        (StageAdvanced, Info, A::None),
        (Succeeded, Info, A::None),
        (EmergencyCleared, Info, A::None),
    ];
    for (event, severity, want) in cases {
        assert_eq!(
            incident_action(event, severity),
            want,
            "{event:?} {severity:?}"
        );
    }
}

// ----- grouping, with the real state machine -----

fn plan() -> Plan {
    let stage = |name: &str, weight| Stage {
        name: name.into(),
        weight,
        min_duration: Duration::from_secs(600),
        max_duration: None,
        required_passes: 3,
        approval: false,
    };
    Plan {
        stages: vec![stage("c10", 10), stage("c25", 25), stage("c50", 50)],
        rollback_to: RollbackTarget::PreviousStage,
        warmup: Duration::ZERO,
        max_inconclusive: 5,
        triggers: vec![],
        start: crate::rollout::StartPolicy::Auto,
    }
}

/// Runs one command and turns its Notify actions into notifications.
fn notify_step(
    state: &RolloutState,
    command: Cmd,
    now: DateTime<Utc>,
    evidence: &[crate::judge::CheckResult],
) -> (RolloutState, Vec<Notification>) {
    let plan = plan();
    let event = Event::command(command, TriggeredBy::Operator("alice".into()), "because");
    let (next, actions) = step(state, &plan, event, now).expect("allowed");
    let ctx = Context {
        rollout: "web",
        team: "payments",
        plan: &plan,
        before: state,
        after: &next,
        at: now,
        evidence,
        public_url: Some("https://canaryd.example.com/"),
    };
    let notes = actions
        .iter()
        .filter_map(|a| match a {
            crate::rollout::Action::Notify {
                event,
                severity,
                message,
            } => Some(Notification::from_action(&ctx, *event, *severity, message)),
            _ => None,
        })
        .collect();
    (next, notes)
}

#[test]
fn one_incident_shares_a_group_key_until_resumed() {
    let s0 = RolloutState::new();
    let (s1, _) = notify_step(&s0, Cmd::Start, at(0), &[]);
    let (s2, paused) = notify_step(&s1, Cmd::Pause, at(60), &[]);
    let (s3, resumed) = notify_step(&s2, Cmd::Resume, at(120), &[]);
    let (_, paused_again) = notify_step(&s3, Cmd::Pause, at(180), &[]);

    assert_eq!(paused[0].incident, IncidentAction::Trigger);
    assert_eq!(resumed[0].incident, IncidentAction::Resolve);
    assert_eq!(
        paused[0].group_key, resumed[0].group_key,
        "resolve closes the same incident"
    );
    assert_ne!(
        paused_again[0].group_key, paused[0].group_key,
        "a pause after the resume is a new incident"
    );
    // Complete, so it runs as printed (issue 20, point 6): URL, token file and reason.
    assert_eq!(
        paused[0].commands[0],
        "canaryd resume web --url https://canaryd.example.com --token-file \
         ~/.config/canaryd/token --reason \"...\""
    );
    assert_eq!(
        paused[0].status_url.as_deref(),
        Some("https://canaryd.example.com/rollouts/web")
    );
    let stage = paused[0].stage.as_ref().expect("at a stage");
    assert_eq!((stage.number, stage.of, stage.name.as_str()), (1, 3, "c10"));
}

#[test]
fn rollback_then_retry_resolves_the_rollback_incident() {
    let s0 = RolloutState::new();
    let (s1, _) = notify_step(&s0, Cmd::Start, at(0), &[]);
    let (s2, paused) = notify_step(&s1, Cmd::Pause, at(60), &[]);
    let (s3, rolled) = notify_step(&s2, Cmd::Rollback, at(90), &[]);
    let (_, retried) = notify_step(&s3, Cmd::Start, at(300), &[]);

    assert_eq!(rolled[0].event, EventKind::RolledBack);
    assert_eq!(rolled[0].incident, IncidentAction::Trigger);
    assert_eq!(
        rolled[0].group_key, paused[0].group_key,
        "escalation of one incident"
    );
    assert!(
        rolled[0].commands.len() == 1 && rolled[0].commands[0].starts_with("canaryd start web "),
        "{:?}",
        rolled[0].commands
    );
    let resolve = retried
        .iter()
        .find(|n| n.incident == IncidentAction::Resolve)
        .expect("the retry resolves");
    assert_eq!(resolve.group_key, rolled[0].group_key);
}

#[test]
fn repeated_triggers_of_one_incident_dedupe_in_the_outbox() {
    let s0 = RolloutState::new();
    let (s1, _) = notify_step(&s0, Cmd::Start, at(0), &[]);
    let (_, first) = notify_step(&s1, Cmd::Pause, at(60), &[]);
    // The same state pausing again later (a failing analysis) is the same incident.
    let (_, second) = notify_step(&s1, Cmd::Pause, at(600), &[]);
    let routes = vec![route(&["pager"], &all_events(), Severity::Info)];
    let a = outbox_messages(&routes, &first[0], 0).unwrap();
    let b = outbox_messages(&routes, &second[0], 0).unwrap();
    assert_eq!(a[0].dedupe_key, b[0].dedupe_key);

    // Informational messages are each sent.
    let (_, advanced) = notify_step(&s1, Cmd::Promote, at(60), &[]);
    let (_, advanced_later) = notify_step(&s1, Cmd::Promote, at(61), &[]);
    let x = outbox_messages(&routes, &advanced[0], 0).unwrap();
    let y = outbox_messages(&routes, &advanced_later[0], 0).unwrap();
    assert_ne!(x[0].dedupe_key, y[0].dedupe_key);
    assert_eq!(x[0].event, "stage-advanced");
    assert_eq!(x[0].severity, "info");
    let back: Notification = serde_json::from_value(x[0].payload.clone()).unwrap();
    assert_eq!(back, advanced[0]);
}

// ----- content -----

fn evidence() -> Vec<crate::judge::CheckResult> {
    let spec = CheckSpec {
        name: "latency_p99".into(),
        kind: CheckKind::Relative { tolerance: 0.1 },
        direction: Direction::HigherIsWorse,
        confidence: 0.99,
        min_samples: 10,
    };
    let series = |scale: f64| {
        SideData::Values(
            (0..30)
                .map(|i| Point {
                    t: f64::from(i) * 60.0,
                    v: scale * (1.0 + f64::from(i % 5) * 0.01),
                })
                .collect(),
        )
    };
    vec![judge_check(&spec, &series(0.2), &series(0.3))]
}

fn sample() -> Notification {
    let s0 = RolloutState::new();
    let (s1, _) = notify_step(&s0, Cmd::Start, at(0), &[]);
    let (_, mut notes) = notify_step(&s1, Cmd::Pause, at(60), &evidence());
    notes.remove(0)
}

#[test]
fn text_and_html_carry_the_decision_the_table_the_link_and_the_commands() {
    let n = sample();
    assert_eq!(n.checks.len(), 1);
    assert_eq!(n.checks[0].verdict, "fail", "{:?}", n.checks[0]);
    let text = content::text(&n);
    for want in [
        "Rollout web (team payments): paused",
        "Decision: Rollout paused at stage 1 `c10` (10%) for review: because",
        "check",
        "baseline",
        "latency_p99",
        "fail",
        "+50.0%",
        "tolerance 10%",
        "Status: https://canaryd.example.com/rollouts/web",
        "canaryd resume web",
        "canaryd rollback web",
    ] {
        assert!(text.contains(want), "text lacks {want:?}:\n{text}");
    }
    let html = content::html(&n);
    assert!(html.contains("<td>latency_p99</td>"), "{html}");
    assert!(html.contains("<a href=\"https://canaryd.example.com/rollouts/web\">"));
    assert!(html.contains("canaryd resume web"));
    assert_eq!(
        content::subject(&n),
        "[canaryd] WARNING web: Rollout paused at stage 1 `c10` (10%) for review: because"
    );
}

#[test]
fn html_escapes_what_people_typed() {
    let mut n = sample();
    n.message = "<script>alert('x')</script> & more".into();
    let html = content::html(&n);
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
}

#[test]
fn pagerduty_events_trigger_and_resolve_on_the_group_key() {
    let n = sample();
    let trigger = content::pagerduty(&n, "KEY", "canaryd");
    assert_eq!(trigger["routing_key"], "KEY");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], n.group_key.as_str());
    assert_eq!(trigger["payload"]["severity"], "warning");
    assert_eq!(trigger["payload"]["source"], "canaryd");
    assert_eq!(
        trigger["payload"]["custom_details"]["checks"][0]["check"],
        "latency_p99"
    );
    let mut resolved = n.clone();
    resolved.event = EventKind::Resumed;
    resolved.severity = Severity::Info;
    resolved.incident = IncidentAction::Resolve;
    let resolve = content::pagerduty(&resolved, "KEY", "canaryd");
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], n.group_key.as_str());
}

#[test]
fn slack_and_webhook_shapes() {
    let n = sample();
    let slack = content::slack(&n);
    assert!(
        slack["text"]
            .as_str()
            .unwrap()
            .starts_with("[canaryd] WARNING web")
    );
    assert!(slack["blocks"].as_array().unwrap().len() >= 3);
    let hook = content::webhook(&n, "key-1");
    assert_eq!(hook["version"], 1);
    assert_eq!(hook["idempotency_key"], "key-1");
    assert_eq!(hook["notification"]["rollout"], "web");
    assert_eq!(hook["notification"]["event"], "paused");
    assert_eq!(
        hook["notification"]["checks"][0]["limit"]["kind"],
        "tolerance"
    );
}

#[test]
fn number_cells() {
    assert_eq!(content::fmt_num(0.25), "0.25");
    assert_eq!(content::fmt_num(0.0001234), "1.234e-4");
    assert_eq!(content::fmt_num(0.0), "0");
    assert_eq!(content::fmt_num(1234.5678), "1234.5678");
}

// ----- errors, backoff, buckets -----

#[test]
fn which_errors_are_retryable() {
    let t = || "x".to_string();
    let http = |status| NotifyError::Http {
        target: t(),
        status,
        body: String::new(),
        retry_after: None,
    };
    let smtp = |code| NotifyError::Smtp {
        target: t(),
        code,
        detail: t(),
    };
    let cases = [
        (
            NotifyError::Connect {
                target: t(),
                detail: t(),
            },
            true,
        ),
        (
            NotifyError::Timeout {
                target: t(),
                after: Duration::from_secs(1),
            },
            true,
        ),
        (http(500), true),
        (http(503), true),
        (http(429), true),
        (http(408), true),
        (http(400), false),
        (http(401), false),
        (http(404), false),
        (smtp(421), true),
        (smtp(451), true),
        (smtp(550), false),
        (
            NotifyError::Auth {
                target: t(),
                detail: t(),
            },
            false,
        ),
        (
            NotifyError::Address {
                address: t(),
                detail: t(),
            },
            false,
        ),
    ];
    for (error, want) in cases {
        assert_eq!(error.retryable(), want, "{error}");
    }
}

#[test]
fn backoff_doubles_caps_and_keeps_at_least_half() {
    let base = Duration::from_secs(5);
    let max = Duration::from_secs(600);
    assert_eq!(backoff(1, base, max, 1.0), Duration::from_secs(5));
    assert_eq!(backoff(1, base, max, 0.0), Duration::from_millis(2500));
    assert_eq!(backoff(2, base, max, 1.0), Duration::from_secs(10));
    assert_eq!(backoff(4, base, max, 1.0), Duration::from_secs(40));
    assert_eq!(backoff(30, base, max, 1.0), max);
    assert_eq!(backoff(u32::MAX, base, max, 0.0), max / 2);
    for jitter in [0.0, 0.3, 0.99] {
        let d = backoff(3, base, max, jitter);
        assert!(
            d >= Duration::from_secs(10) && d <= Duration::from_secs(20),
            "{d:?}"
        );
    }
}

// ----- config -----

#[test]
fn receiver_config_parses_each_kind_and_refuses_unknown_keys() {
    let text = r#"
        [email]
        kind = "email"
        to = ["team@example.com"]
        from = "canaryd@example.com"
        smtp_host = "127.0.0.1"
        tls = "none"

        [slack]
        kind = "slack"
        url = "https://hooks.slack.com/services/T/B/X"

        [hook]
        kind = "webhook"
        url = "https://ops.example.com/canaryd"
        headers = { X-Tenant = "payments" }
        timeout = "3s"

        [pager]
        kind = "pagerduty"
        routing_key_file = "/etc/canaryd/pagerduty.key"
    "#;
    let configs: BTreeMap<String, ReceiverConfig> = toml::from_str(text).unwrap();
    assert_eq!(configs["email"].kind(), "email");
    match &configs["pager"] {
        ReceiverConfig::Pagerduty(c) => {
            assert_eq!(c.url, config::PAGERDUTY_URL);
            assert_eq!(c.source, "canaryd");
            assert_eq!(c.rate_per_minute, 60);
        }
        other => panic!("{other:?}"),
    }
    match &configs["hook"] {
        ReceiverConfig::Webhook(c) => assert_eq!(c.timeout, Duration::from_secs(3)),
        other => panic!("{other:?}"),
    }
    for (name, c) in &configs {
        assert!(
            c.validate(name).is_empty(),
            "{name}: {:?}",
            c.validate(name)
        );
    }

    let typo = "kind = \"slack\"\nurl = \"https://x.example\"\nchanel = \"#ops\"\n";
    let err = toml::from_str::<ReceiverConfig>(typo)
        .unwrap_err()
        .to_string();
    assert!(err.contains("chanel"), "{err}");
    let kind = toml::from_str::<ReceiverConfig>("kind = \"sms\"\n")
        .unwrap_err()
        .to_string();
    assert!(kind.contains("sms"), "{kind}");
}

#[test]
fn validation_reports_every_problem() {
    let text = r#"
        kind = "email"
        to = ["not an address"]
        from = "canaryd@example.com"
        smtp_host = "smtp.example.com"
        tls = "none"
        username = "canaryd"
        rate_per_minute = 0
    "#;
    let c: ReceiverConfig = toml::from_str(text).unwrap();
    let problems: Vec<String> = c
        .validate("team-email")
        .into_iter()
        .map(|e| e.to_string())
        .collect();
    let joined = problems.join("\n");
    for want in [
        "receiver `team-email`: `rate_per_minute` must be at least 1",
        "`not an address` is not an email address",
        "`username` is set but `password_file` is not",
        "clear text",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
}

#[test]
fn building_reads_secret_files_and_names_missing_ones() {
    let text = "kind = \"pagerduty\"\nrouting_key_file = \"/nonexistent/canaryd/pd.key\"\n";
    let configs: BTreeMap<String, ReceiverConfig> =
        BTreeMap::from([("pager".to_string(), toml::from_str(text).unwrap())]);
    let problems = Receivers::build(&configs).unwrap_err();
    assert_eq!(problems.len(), 1);
    let msg = problems[0].to_string();
    assert!(
        msg.starts_with(
            "receiver `pager`: cannot read `routing_key_file` /nonexistent/canaryd/pd.key"
        ),
        "{msg}"
    );
}

// ----- the dispatcher against a real store -----

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "canaryd-notify-{tag}-{}-{}",
            std::process::id(),
            Utc::now().timestamp_nanos_opt().unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fast() -> DispatchSettings {
    DispatchSettings {
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(10),
        max_in_flight: 4,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(80),
        max_attempts: 5,
        max_age: Duration::from_secs(3600),
        max_rate_wait: Duration::from_millis(200),
        shutdown_grace: Duration::from_secs(1),
    }
}

fn enqueue(store: &Store, receiver: &str, n: &Notification, index: usize) -> i64 {
    let routes = vec![route(&[receiver], &all_events(), Severity::Info)];
    let message = outbox_messages(&routes, n, index).unwrap().remove(0);
    store.enqueue(&message, Utc::now()).unwrap().expect("new")
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn status(store: &Store, n: &Notification, receiver: &str) -> crate::store::Message {
    store
        .message_by_dedupe_key(&dedupe_key(n, receiver, 0))
        .unwrap()
        .expect("enqueued")
}

#[tokio::test]
async fn dispatcher_retries_retryable_errors_and_fails_permanent_ones() {
    let dir = TempDir::new("retry");
    let store = Store::open(&dir.0).unwrap();
    let flaky = MemoryNotifier::new();
    flaky.fail_with([
        NotifyError::Connect {
            target: "x".into(),
            detail: "refused".into(),
        },
        NotifyError::Http {
            target: "x".into(),
            status: 503,
            body: String::new(),
            retry_after: None,
        },
    ]);
    let broken = MemoryNotifier::new();
    broken.fail_with([NotifyError::Http {
        target: "x".into(),
        status: 400,
        body: "bad payload".into(),
        retry_after: None,
    }]);
    let mut receivers = Receivers::default();
    receivers.insert("flaky", Arc::new(flaky.clone()), RateLimit::UNLIMITED);
    receivers.insert("broken", Arc::new(broken.clone()), RateLimit::UNLIMITED);
    let n = sample();
    enqueue(&store, "flaky", &n, 0);
    enqueue(&store, "broken", &n, 0);
    enqueue(&store, "nobody", &n, 0);

    let dispatcher = Dispatcher::new(store.clone(), receivers, fast());
    let handle = dispatcher.handle();
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(token.clone()));
    until("every message settled", || {
        store.outbox_counts().unwrap().pending == 0
    })
    .await;
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(flaky.attempts(), 3);
    assert_eq!(flaky.sent().len(), 1);
    assert_eq!(flaky.sent()[0].0, dedupe_key(&n, "flaky", 0));
    let m = status(&store, &n, "flaky");
    assert_eq!((m.status, m.attempts), (MessageStatus::Sent, 3));

    assert_eq!(broken.attempts(), 1, "a 400 is not retried");
    let m = status(&store, &n, "broken");
    assert_eq!(m.status, MessageStatus::Failed);
    assert!(m.last_error.unwrap().contains("HTTP 400"));

    let m = status(&store, &n, "nobody");
    assert_eq!(m.status, MessageStatus::Failed);
    assert!(
        m.last_error
            .unwrap()
            .contains("receiver `nobody` is not configured (known: broken, flaky)")
    );

    let metrics = handle.metrics();
    assert_eq!((metrics.sent, metrics.failed, metrics.retried), (1, 2, 2));
    let text = metrics.render(&store.outbox_counts().unwrap());
    assert!(
        text.contains("canaryd_notifications_sent_total 1\n"),
        "{text}"
    );
    assert!(text.contains("canaryd_notifications_outbox{status=\"failed\"} 2\n"));
}

#[tokio::test]
async fn dispatcher_gives_up_after_max_attempts() {
    let dir = TempDir::new("give-up");
    let store = Store::open(&dir.0).unwrap();
    let down = MemoryNotifier::new();
    down.fail_with((0..10).map(|_| NotifyError::Connect {
        target: "x".into(),
        detail: "refused".into(),
    }));
    let mut receivers = Receivers::default();
    receivers.insert("down", Arc::new(down.clone()), RateLimit::UNLIMITED);
    let n = sample();
    enqueue(&store, "down", &n, 0);
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(Dispatcher::new(store.clone(), receivers, fast()).run(token.clone()));
    until("the message failed", || {
        store.outbox_counts().unwrap().failed == 1
    })
    .await;
    token.cancel();
    task.await.unwrap();
    assert_eq!(down.attempts(), 5);
    let m = status(&store, &n, "down");
    assert!(
        m.last_error
            .unwrap()
            .starts_with("gave up after 5 attempts")
    );
}

#[tokio::test]
async fn over_the_rate_limit_messages_are_delayed_not_dropped() {
    let dir = TempDir::new("rate");
    let store = Store::open(&dir.0).unwrap();
    let slow = MemoryNotifier::new();
    let mut receivers = Receivers::default();
    // One token, refilled every 100 ms; waits over 200 ms are rescheduled.
    let rate = RateLimit {
        per_minute: 600,
        burst: 1,
    };
    receivers.insert("slow", Arc::new(slow.clone()), rate);
    let base = sample();
    for i in 0..6 {
        let mut n = base.clone();
        n.event = EventKind::StageAdvanced;
        n.incident = IncidentAction::None;
        n.at = base.at + chrono::Duration::seconds(i);
        enqueue(&store, "slow", &n, 0);
    }
    let token = tokio_util::sync::CancellationToken::new();
    let dispatcher = Dispatcher::new(store.clone(), receivers, fast());
    let handle = dispatcher.handle();
    let started = Instant::now();
    let task = tokio::spawn(dispatcher.run(token.clone()));
    until("all six sent", || store.outbox_counts().unwrap().sent == 6).await;
    let took = started.elapsed();
    token.cancel();
    task.await.unwrap();
    assert_eq!(slow.sent().len(), 6, "each message once");
    // Six sends at one per 100 ms after the first take at least half a second.
    assert!(took >= Duration::from_millis(490), "{took:?}");
    let metrics = handle.metrics();
    assert_eq!(metrics.failed, 0);
    assert!(
        metrics.rate_limited > 0,
        "some waits were long enough to reschedule"
    );
}

/// The dispatcher reads the time from the clock it is given: on a clock a minute behind the
/// message's due time, nothing is sent until that clock (here tokio's paused time) reaches it.
#[tokio::test(start_paused = true)]
async fn the_dispatcher_sends_when_its_own_clock_says_a_message_is_due() {
    let dir = TempDir::new("clock");
    let store = Store::open(&dir.0).unwrap();
    let inbox = MemoryNotifier::new();
    let mut receivers = Receivers::default();
    receivers.insert("team", Arc::new(inbox.clone()), RateLimit::UNLIMITED);
    let n = sample();
    let due = Utc::now();
    let routes = vec![route(&["team"], &all_events(), Severity::Info)];
    let message = outbox_messages(&routes, &n, 0).unwrap().remove(0);
    store.enqueue(&message, due).unwrap().expect("new");
    let clock = crate::clock::Clock::following_tokio(due - chrono::Duration::seconds(60));
    let settings = DispatchSettings {
        poll_interval: Duration::from_secs(1),
        ..fast()
    };
    let dispatcher = Dispatcher::with_clock(store.clone(), receivers, settings, clock);
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(dispatcher.run(token.clone()));
    tokio::time::sleep(Duration::from_secs(58)).await;
    assert!(inbox.sent().is_empty(), "sent before its due time");
    tokio::time::sleep(Duration::from_secs(3)).await;
    until("the message sent", || inbox.sent().len() == 1).await;
    assert!(clock.now() >= due);
    token.cancel();
    task.await.unwrap();
}
