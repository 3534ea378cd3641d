//! Email notifications against a real SMTP server (aiosmtpd, on 127.0.0.1): the message that
//! arrives, STARTTLS with the test's own certificate, AUTH, and a wrong password failing for
//! good without a retry.

use crate::smtp;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use smtp::{Options, SmtpServer, TempDir, leaf_parts, split};

use canaryd::judge::{CheckKind, CheckSpec, Direction, Point, SideData, judge_check};
use canaryd::notify::rate::RateLimit;
use canaryd::notify::{
    CheckRow, DispatchSettings, Dispatcher, IncidentAction, Notification, NotifyError,
    ReceiverConfig, Receivers, StageInfo, dedupe_key, outbox_messages,
};
use canaryd::rollout::{EventKind, Severity};
use canaryd::rules::Route;
use canaryd::store::{MessageStatus, Store};

fn notification() -> Notification {
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
    let result = judge_check(&spec, &series(0.2), &series(0.3));
    Notification {
        scope: canaryd::notify::Scope::Rollout,
        rollout: "web".into(),
        team: "payments".into(),
        event: EventKind::RolledBack,
        severity: Severity::Critical,
        incident: IncidentAction::Trigger,
        group_key: "canaryd/web/1740830400000".into(),
        at: Utc.with_ymd_and_hms(2025, 3, 1, 12, 5, 0).unwrap(),
        message: "Rolled back from 25% to 10%: check `latency_p99` failing".into(),
        phase: "rolled back".into(),
        stage: Some(StageInfo {
            number: 2,
            of: 3,
            name: "c25".into(),
            weight: 25,
        }),
        weight: 10,
        checks: vec![CheckRow::from_result(&result)],
        status_url: Some("https://canaryd.example.com/rollouts/web".into()),
        commands: vec!["canaryd start web".into()],
    }
}

fn email_config(server: &SmtpServer, extra: &str) -> ReceiverConfig {
    let text = format!(
        "kind = \"email\"\nto = [\"team@example.com\", \"oncall@example.com\"]\n\
         from = \"canaryd <canaryd@example.com>\"\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {}\ntimeout = \"5s\"\n{extra}",
        server.port
    );
    toml::from_str(&text).expect("a valid email receiver")
}

fn build(config: &ReceiverConfig) -> std::sync::Arc<dyn canaryd::notify::Notifier> {
    config.build("team-email").expect("the receiver builds")
}

/// Asserts a received message is the notification, with both parts.
fn assert_is_the_notification(raw: &str, key: &str) {
    let top = split(raw);
    assert_eq!(
        top.header("subject"),
        Some("[canaryd] CRITICAL web: Rolled back from 25% to 10%: check `latency_p99` failing")
    );
    assert_eq!(
        top.header("x-envelope-to"),
        Some("team@example.com,oncall@example.com")
    );
    let id = top.header("message-id").expect("a Message-ID");
    assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
    assert!(
        id.contains(&key.replace('/', ".")),
        "{id} is derived from {key}"
    );
    assert!(
        top.header("content-type")
            .is_some_and(|c| c.starts_with("multipart/alternative")),
        "{:?}",
        top.header("content-type")
    );
    let parts = leaf_parts(raw);
    let of_type = |t: &str| {
        parts
            .iter()
            .find(|p| p.header("content-type").is_some_and(|c| c.starts_with(t)))
            .unwrap_or_else(|| panic!("no {t} part in {parts:#?}"))
    };
    let text = &of_type("text/plain").body;
    let html = &of_type("text/html").body;
    for want in [
        "Rollout web (team payments): rolled-back",
        "stage 2 of 3 `c25`",
        "latency_p99",
        "+50.0%",
        "tolerance 10%",
        "https://canaryd.example.com/rollouts/web",
        "canaryd start web",
    ] {
        assert!(text.contains(want), "text part lacks {want:?}:\n{text}");
    }
    assert!(html.contains("<th>baseline</th>"), "{html}");
    assert!(html.contains("<td>latency_p99</td>"), "{html}");
    assert!(html.contains("<td>fail</td>"), "{html}");
    assert!(
        html.contains("<a href=\"https://canaryd.example.com/rollouts/web\">"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_relay_delivers_text_and_html_with_the_evidence() {
    let server = SmtpServer::start(Options::default());
    let notifier = build(&email_config(&server, "tls = \"none\"\n"));
    notifier
        .send(
            &notification(),
            "canaryd/web/1740830400000/rolled-back/team-email",
        )
        .await
        .expect("delivered");
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_is_the_notification(&got[0], "canaryd/web/1740830400000/rolled-back/team-email");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_the_tests_own_certificate_and_auth() {
    let dir = TempDir::new("smtp-tls");
    let (ca, cert, key) = smtp::test_certificates(dir.path());
    let server = SmtpServer::start(Options {
        starttls: Some((cert, key)),
        auth: Some(("canaryd".into(), "s3cret".into())),
    });
    let password = dir.path().join("smtp.pass");
    std::fs::write(&password, "s3cret\n").unwrap();
    let extra = format!(
        "tls = \"starttls\"\nusername = \"canaryd\"\npassword_file = {:?}\nca_file = {:?}\n",
        password.display().to_string(),
        ca.display().to_string()
    );
    let notifier = build(&email_config(&server, &extra));
    notifier
        .send(&notification(), "key-1")
        .await
        .expect("delivered over STARTTLS with AUTH");
    let got = server.wait_for(1, Duration::from_secs(10));
    assert_is_the_notification(&got[0], "key-1");

    // Without the test's certificate the same server is not trusted: a TLS error.
    let untrusted = format!(
        "tls = \"starttls\"\nusername = \"canaryd\"\npassword_file = {:?}\n",
        password.display().to_string()
    );
    let err = build(&email_config(&server, &untrusted))
        .send(&notification(), "key-2")
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(matches!(err, NotifyError::Tls { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_starttls_refuses_plain_text() {
    let dir = TempDir::new("smtp-need-tls");
    let (_ca, cert, key) = smtp::test_certificates(dir.path());
    let server = SmtpServer::start(Options {
        starttls: Some((cert, key)),
        auth: None,
    });
    let err = build(&email_config(&server, "tls = \"none\"\n"))
        .send(&notification(), "key-1")
        .await
        .expect_err("the server wants STARTTLS first");
    assert!(!err.retryable(), "{err:?}");
    assert!(server.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_for_good_without_a_retry() {
    let dir = TempDir::new("smtp-auth");
    let (ca, cert, key) = smtp::test_certificates(dir.path());
    let server = SmtpServer::start(Options {
        starttls: Some((cert, key)),
        auth: Some(("canaryd".into(), "s3cret".into())),
    });
    let password = dir.path().join("smtp.pass");
    std::fs::write(&password, "wrong-password").unwrap();
    let extra = format!(
        "tls = \"starttls\"\nusername = \"canaryd\"\npassword_file = {:?}\nca_file = {:?}\n",
        password.display().to_string(),
        ca.display().to_string()
    );
    let config = email_config(&server, &extra);

    // Directly: an authentication error, not retryable, and the password is nowhere in it.
    let err = build(&config)
        .send(&notification(), "key-1")
        .await
        .expect_err("bad credentials");
    assert!(matches!(err, NotifyError::Auth { .. }), "{err:?}");
    assert!(!err.retryable());
    assert!(err.to_string().contains("535"), "{err}");
    assert!(!err.to_string().contains("wrong-password"), "{err}");

    // Through the dispatcher: one attempt, then failed for good.
    let state = TempDir::new("smtp-auth-state");
    let store = Store::open(state.path()).unwrap();
    let receivers =
        Receivers::build(&BTreeMap::from([("team-email".to_string(), config)])).expect("builds");
    let n = notification();
    let routes = vec![Route {
        receivers: vec!["team-email".into()],
        events: vec![EventKind::RolledBack],
        min_severity: Severity::Info,
    }];
    for m in outbox_messages(&routes, &n, 0).unwrap() {
        store.enqueue(&m, Utc::now()).unwrap();
    }
    let settings = DispatchSettings {
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        ..DispatchSettings::default()
    };
    let token = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(Dispatcher::new(store.clone(), receivers, settings).run(token.clone()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while store.outbox_counts().unwrap().failed == 0 {
        assert!(Instant::now() < deadline, "the message never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Failed is final (the store never claims a failed message again: store tests), so no
    // retry can follow; one attempt recorded means none came before it either.
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    let m = store
        .message_by_dedupe_key(&dedupe_key(&n, "team-email", 0))
        .unwrap()
        .unwrap();
    assert_eq!(m.status, MessageStatus::Failed);
    assert_eq!(m.attempts, 1, "a permanent error is not retried");
    assert!(m.last_error.unwrap().contains("rejected the credentials"));
    assert!(server.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_delivers_from_the_outbox_exactly_once() {
    let server = SmtpServer::start(Options::default());
    let state = TempDir::new("smtp-outbox");
    let store = Store::open(state.path()).unwrap();
    let mut receivers = Receivers::build(&BTreeMap::from([(
        "team-email".to_string(),
        email_config(&server, "tls = \"none\"\n"),
    )]))
    .expect("builds");
    // Unused, shows receivers can be mixed with fakes.
    receivers.insert(
        "memory",
        std::sync::Arc::new(canaryd::notify::MemoryNotifier::new()),
        RateLimit::UNLIMITED,
    );
    let n = notification();
    let routes = vec![Route {
        receivers: vec!["team-email".into()],
        events: vec![EventKind::RolledBack],
        min_severity: Severity::Warning,
    }];
    for m in outbox_messages(&routes, &n, 0).unwrap() {
        store.enqueue(&m, Utc::now()).unwrap();
    }
    let settings = DispatchSettings {
        poll_interval: Duration::from_millis(20),
        ..DispatchSettings::default()
    };
    let token = tokio_util::sync::CancellationToken::new();
    let dispatcher = Dispatcher::new(store.clone(), receivers, settings);
    let handle = dispatcher.handle();
    let task = tokio::spawn(dispatcher.run(token.clone()));
    let got = server.wait_for(1, Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.outbox_counts().unwrap().sent == 0 {
        assert!(Instant::now() < deadline, "never marked sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Sent is final: the store never claims a sent message again, so a second delivery could
    // only be one already in flight, and stopping the dispatcher waits for those.
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.messages().len(), 1, "sent once");
    assert_is_the_notification(&got[0], &dedupe_key(&n, "team-email", 0));
    assert_eq!(handle.metrics().sent, 1);
}
