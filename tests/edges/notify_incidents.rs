//! Incidents as a PagerDuty-shaped endpoint (Events v2 on 127.0.0.1) lives them, through the
//! real dispatcher and store: every incident's trigger and resolve reach it in order and once;
//! a resolve for a rollback that is retried is queued (it shares the rolled-back event's name);
//! a trigger retried after a 503 is never delivered after its own resolve; and after a crash
//! that left messages claimed, they are delivered again within seconds, never after their
//! resolve. The endpoint's view is replayed as PagerDuty would: a `trigger` opens the incident
//! of its `dedup_key` (or updates it), a `resolve` closes it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use canaryd::notify::{
    DispatchSettings, Dispatcher, IncidentAction, Notification, ReceiverConfig, Receivers,
    outbox_messages,
};
use canaryd::rollout::{EventKind, Severity};
use canaryd::rules::Route;
use canaryd::store::Store;

use crate::smtp::TempDir;

/// A PagerDuty-shaped endpoint: answers the scripted statuses first, then 202; records every
/// event it accepted.
#[derive(Clone, Default)]
struct Pager(Arc<Mutex<PagerState>>);

/// The statuses still to answer, the events accepted, and how many requests were read.
type PagerState = (VecDeque<u16>, Vec<Value>, usize);

impl Pager {
    async fn start(&self) -> String {
        let app = Router::new()
            .route("/v2/enqueue", axum::routing::post(accept))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v2/enqueue", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn script(&self, statuses: &[u16]) {
        self.0.lock().unwrap().0.extend(statuses);
    }

    /// Every request read (accepted or not).
    fn requests(&self) -> usize {
        self.0.lock().unwrap().2
    }

    /// The events accepted, in order.
    fn accepted(&self) -> Vec<Value> {
        self.0.lock().unwrap().1.clone()
    }

    /// `(dedup_key, event_action)` of the accepted events, in order.
    fn actions(&self) -> Vec<(String, String)> {
        self.accepted()
            .iter()
            .map(|e| {
                (
                    e["dedup_key"].as_str().unwrap_or("").to_string(),
                    e["event_action"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The incidents left open, as PagerDuty would see them: each dedup_key's last action.
    fn open(&self) -> Vec<String> {
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        for (key, action) in self.actions() {
            last.insert(key, action);
        }
        last.into_iter()
            .filter(|(_, a)| a == "trigger")
            .map(|(k, _)| k)
            .collect()
    }
}

async fn accept(State(pager): State<Pager>, axum::Json(body): axum::Json<Value>) -> StatusCode {
    let mut s = pager.0.lock().unwrap();
    s.2 += 1;
    match s.0.pop_front() {
        Some(status) => StatusCode::from_u16(status).unwrap(),
        None => {
            s.1.push(body);
            StatusCode::ACCEPTED
        }
    }
}

fn pager_receivers(url: &str, dir: &TempDir) -> Receivers {
    let key = dir.path().join("pd.key");
    std::fs::write(&key, "R0UTINGKEY\n").unwrap();
    let config: ReceiverConfig = toml::from_str(&format!(
        "kind = \"pagerduty\"\nurl = \"{url}\"\nrouting_key_file = {:?}\ntimeout = \"2s\"\n",
        key.display().to_string()
    ))
    .unwrap();
    Receivers::build(&BTreeMap::from([("pager".to_string(), config)])).expect("builds")
}

fn notification(
    rollout: &str,
    event: EventKind,
    severity: Severity,
    incident: IncidentAction,
) -> Notification {
    Notification {
        scope: canaryd::notify::Scope::Rollout,
        rollout: rollout.into(),
        team: "payments".into(),
        event,
        severity,
        incident,
        group_key: format!("canaryd/{rollout}/1740830400000"),
        at: Utc.with_ymd_and_hms(2025, 3, 1, 12, 5, 0).unwrap(),
        message: format!("{rollout}: {event:?}"),
        phase: "paused".into(),
        stage: None,
        weight: 25,
        checks: vec![],
        status_url: None,
        commands: vec![],
    }
}

fn trigger(rollout: &str) -> Notification {
    notification(
        rollout,
        EventKind::Paused,
        Severity::Warning,
        IncidentAction::Trigger,
    )
}

fn resolve(rollout: &str) -> Notification {
    notification(
        rollout,
        EventKind::Resumed,
        Severity::Info,
        IncidentAction::Resolve,
    )
}

/// Queue `n` for the pager as the daemon does (routes, dedupe keys); whether it was queued.
fn enqueue(store: &Store, n: &Notification) -> bool {
    let routes = vec![Route {
        receivers: vec!["pager".into()],
        events: vec![n.event],
        min_severity: Severity::Info,
    }];
    let messages = outbox_messages(&routes, n, 0).unwrap();
    assert_eq!(messages.len(), 1, "routed to the pager");
    store.enqueue(&messages[0], Utc::now()).unwrap().is_some()
}

fn settings() -> DispatchSettings {
    DispatchSettings {
        poll_interval: Duration::from_millis(100),
        backoff_base: Duration::from_secs(5),
        backoff_max: Duration::from_secs(30),
        ..DispatchSettings::default()
    }
}

struct Running {
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn run(store: &Store, receivers: Receivers) -> Running {
    let token = CancellationToken::new();
    let clock = canaryd::clock::Clock::following_tokio(Utc::now());
    let dispatcher = Dispatcher::with_clock(store.clone(), receivers, settings(), clock);
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

/// Poll `done` every 50 ms of tokio's time, at most `limit` of it.
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn the_resolve_of_a_retried_rollback_is_queued_and_closes_the_incident() {
    let pager = Pager::default();
    let url = pager.start().await;
    let dir = TempDir::new("incident-retry");
    let store = Store::open(dir.path()).unwrap();
    // The machine says "rolled back" (critical) and, on the retry, "rolled back" (info): the
    // same event's name for the trigger and its resolve.
    let rolled_back = notification(
        "web",
        EventKind::RolledBack,
        Severity::Critical,
        IncidentAction::Trigger,
    );
    let retried = notification(
        "web",
        EventKind::RolledBack,
        Severity::Info,
        IncidentAction::Resolve,
    );
    let running = run(&store, pager_receivers(&url, &dir));
    assert!(enqueue(&store, &rolled_back));
    until("the trigger delivered", Duration::from_secs(10), || {
        pager.accepted().len() == 1
    })
    .await;
    assert!(enqueue(&store, &retried), "the resolve must be queued");
    until("both delivered", Duration::from_secs(10), || {
        pager.accepted().len() == 2
    })
    .await;
    running.stop().await;
    let key = "canaryd/web/1740830400000".to_string();
    assert_eq!(
        pager.actions(),
        vec![(key.clone(), "trigger".into()), (key, "resolve".into())]
    );
    assert!(pager.open().is_empty(), "{:?}", pager.open());
}

#[tokio::test(start_paused = true)]
async fn a_trigger_retried_after_a_503_is_never_delivered_after_its_resolve() {
    let pager = Pager::default();
    pager.script(&[503]);
    let url = pager.start().await;
    let dir = TempDir::new("incident-503");
    let store = Store::open(dir.path()).unwrap();
    assert!(enqueue(&store, &trigger("web")));
    let running = run(&store, pager_receivers(&url, &dir));
    // The trigger's first attempt got the 503; it waits for its retry when the rollout resumes.
    until("the 503", Duration::from_secs(5), || pager.requests() == 1).await;
    assert!(enqueue(&store, &resolve("web")));
    until("the resolve", Duration::from_secs(60), || {
        pager.actions().iter().any(|(_, a)| a == "resolve")
    })
    .await;
    // Well past every backoff: nothing reopens the incident.
    tokio::time::sleep(Duration::from_secs(300)).await;
    running.stop().await;
    let actions = pager.actions();
    let resolved_at = actions.iter().position(|(_, a)| a == "resolve").unwrap();
    assert_eq!(
        resolved_at,
        actions.len() - 1,
        "nothing after the resolve: {actions:?}"
    );
    assert!(pager.open().is_empty(), "left open: {actions:?}");
}

#[tokio::test(start_paused = true)]
async fn after_a_crash_claimed_messages_go_out_within_seconds_and_never_after_their_resolve() {
    let pager = Pager::default();
    let url = pager.start().await;
    let dir = TempDir::new("incident-crash");
    let names: Vec<String> = (0..11).map(|i| format!("app{i:02}")).collect();
    {
        // The process before the crash: eleven incidents opened, each trigger claimed by its
        // dispatcher (in flight) when the process was killed.
        let store = Store::open(dir.path()).unwrap();
        for name in &names {
            assert!(enqueue(&store, &trigger(name)));
        }
        let claimed = store
            .claim_due(Utc::now(), Duration::from_secs(120), 100)
            .unwrap();
        assert_eq!(claimed.len(), 11);
    }
    // After the restart, eight of the rollouts are resumed at once.
    let store = Store::open(dir.path()).unwrap();
    for name in &names[..8] {
        assert!(enqueue(&store, &resolve(name)));
    }
    let running = run(&store, pager_receivers(&url, &dir));
    // Within seconds (not the 120 s lease): the eight closed, the three still open paged.
    let want_open: Vec<String> = names[8..]
        .iter()
        .map(|n| format!("canaryd/{n}/1740830400000"))
        .collect();
    until(
        "the redelivery after the restart",
        Duration::from_secs(5),
        || {
            let actions = pager.actions();
            pager.open() == want_open && actions.iter().filter(|(_, a)| a == "resolve").count() == 8
        },
    )
    .await;
    // Past the old lease: no trigger comes back after its resolve, nothing is sent twice.
    tokio::time::sleep(Duration::from_secs(300)).await;
    running.stop().await;
    assert_eq!(pager.open(), want_open, "{:?}", pager.actions());
    let actions = pager.actions();
    let mut seen = std::collections::BTreeSet::new();
    for action in &actions {
        assert!(seen.insert(action.clone()), "sent twice: {action:?}");
    }
}
