//! The status page as a person sees it: the daemon embedded in-process (`daemon::run`) analyses
//! a rollout every second against a tiny Prometheus stand-in on 127.0.0.1 (it answers
//! `/api/v1/query_range` with a minute of points per side, a NaN here and there), then headless
//! Chromium loads the pages. The rollout's page must draw one SVG chart per check with both
//! series and the threshold; the overview must show the rollout with its stage chips and escape a
//! `<script>` that reached a reason (through a backend error message); an unknown rollout is a
//! 404 page; and a screenshot is a real PNG.

use crate::api_support::daemon_support as support;
use crate::chromium;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use canaryd::store::Store;
use chromium::Chromium;
use serde_json::{Value, json};
use support::{Embedded, embed, temp_dir, wait_for, write_config};

const HOSTILE: &str = "<script>document.body.remove()</script>";

const RULE: &str = r#"
[rollout]
name = "checkout"
team = "payments"
source = "prometheus"
actuator = "builtin"
rollback_to = "zero"

[analysis]
every = "1s"
warmup = "1s"
max_inconclusive = 1000

[[stages]]
name = "10%"
weight = 10
min_duration = "2s"
required_passes = 1

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
name = "latency-max"
kind = "absolute"
direction = "higher-is-worse"
threshold = 0.25
aggregate = "max"
query = 'latency_seconds{ {{label}}="{{side}}" }'
window = "1m"
min_samples = 5

[[checks]]
name = "latency-vs-baseline"
kind = "relative"
direction = "higher-is-worse"
tolerance = 0.2
query = 'latency_seconds{ {{label}}="{{side}}" }'
window = "1m"
step = "100ms"
min_samples = 5

[[checks]]
name = "errors"
kind = "error-rate"
tolerance = 0.01
errors_query = 'errors{ {{label}}="{{side}}" }'
total_query = 'requests{ {{label}}="{{side}}" }'
window = "1m"
step = "100ms"
"#;

/// What the stand-in answers for one query at time `t`.
fn value(query: &str, t: f64) -> Option<f64> {
    let canary = query.contains("\"v2\"");
    let wobble = (t / 7.0).sin();
    if query.starts_with("latency_seconds") {
        // A NaN now and then: the page must skip it.
        if (t as i64) % 17 == 0 {
            return None;
        }
        Some(if canary { 0.105 } else { 0.1 } + 0.01 * wobble)
    } else if query.starts_with("errors") {
        Some(if canary { 1.2 } else { 1.0 } + 0.3 * wobble)
    } else {
        Some(100.0 + 5.0 * wobble)
    }
}

#[derive(serde::Deserialize)]
struct RangeQuery {
    query: String,
    start: f64,
    end: f64,
    step: f64,
}

/// Prometheus's `query_range`, or a 503 whose message is hostile markup when `failing` is set.
async fn query_range(
    State(failing): State<Arc<AtomicBool>>,
    Query(q): Query<RangeQuery>,
) -> (StatusCode, axum::Json<Value>) {
    if failing.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "error", "errorType": "unavailable", "error": HOSTILE})),
        );
    }
    let mut values = Vec::new();
    let mut t = q.start;
    while t <= q.end + 1e-9 && values.len() < 11_000 {
        let v = value(&q.query, t).map_or_else(|| "NaN".to_string(), |v| v.to_string());
        values.push(json!([t, v]));
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

async fn serve_prometheus(failing: Arc<AtomicBool>) -> SocketAddr {
    let app = axum::Router::new()
        .route("/api/v1/query_range", axum::routing::get(query_range))
        .with_state(failing);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Every `<svg ...>...</svg>` element of a DOM dump.
fn svgs(dom: &str) -> Vec<&str> {
    dom.split("<svg")
        .skip(1)
        .map(|rest| &rest[..rest.find("</svg>").expect("an unclosed svg")])
        .collect()
}

/// The number of coordinate pairs of each `<polyline>` in `svg`.
fn polyline_points(svg: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .map(|rest| {
            let start = rest.find("points=\"").unwrap() + 8;
            let end = start + rest[start..].find('"').unwrap();
            rest[start..end].split_whitespace().count()
        })
        .collect()
}

fn is_png(path: &std::path::Path) -> usize {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        path.display()
    );
    bytes.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_pages_render_charts_history_and_escaped_reasons_in_chromium() {
    let dir = temp_dir("web");
    // Fail early, before any waiting, when Chromium is missing.
    let browser = Chromium::find(&dir.join("chromium"));
    let failing = Arc::new(AtomicBool::new(false));
    let prom = serve_prometheus(Arc::clone(&failing)).await;
    let config_path = write_config(
        &dir,
        &format!("http://{prom}"),
        "http://127.0.0.1:9/weights",
    );
    std::fs::write(dir.join("rules/checkout.toml"), RULE).unwrap();
    let Embedded {
        base,
        shutdown,
        running,
        ..
    } = embed(&config_path).await;
    let store = Store::open(&dir.join("state")).unwrap();

    // Real analyses, then a backend outage whose error message is hostile markup; it lasts
    // while the pages are read, so the alert is the last decision and the charts come from the
    // last analysis that had data.
    // Ten: the staged checks (relative, error rate) chart their stage's own points, 10 a
    // second since the warm-up of `half`, which starts after a few seconds.
    wait_for("ten analyses", Duration::from_secs(40), || async {
        let page = store.analyses_page("checkout", None, 10).unwrap();
        (page.items.len() >= 10).then_some(())
    })
    .await;
    failing.store(true, Ordering::SeqCst);
    wait_for("the backend alert", Duration::from_secs(20), || async {
        let page = store.audit_page("checkout", None, 50).unwrap();
        page.items
            .iter()
            .any(|e| e.reason.contains(HOSTILE))
            .then_some(())
    })
    .await;

    let pages = base.clone();
    let shot = dir.join("page.png");
    let shot_path = shot.clone();
    let overview_shot = dir.join("overview.png");
    let overview_path = overview_shot.clone();
    let (detail, overview, missing) = tokio::task::spawn_blocking(move || {
        // Both pages load under their Content-Security-Policy without Chromium refusing
        // anything they need (a refusal is logged naming the policy).
        let (detail, log) =
            browser.dump_dom_logged("detail", &format!("{pages}/rollouts/checkout"));
        assert!(
            !log.contains("Content Security Policy"),
            "the detail page:\n{log}"
        );
        let (overview, log) = browser.dump_dom_logged("overview", &format!("{pages}/"));
        assert!(
            !log.contains("Content Security Policy"),
            "the overview:\n{log}"
        );
        let missing = browser.dump_dom("missing", &format!("{pages}/rollouts/no-such-rollout"));
        browser.screenshot(
            "shot-detail",
            &format!("{pages}/rollouts/checkout"),
            &shot,
            1280,
            1600,
        );
        browser.screenshot(
            "shot-overview",
            &format!("{pages}/"),
            &overview_shot,
            1280,
            700,
        );
        (detail, overview, missing)
    })
    .await
    .unwrap();
    failing.store(false, Ordering::SeqCst);

    // One chart per check, each with both series drawn from many points (a check reads one point
    // per step, 30 over its window by default) and a threshold.
    let charts = svgs(&detail);
    assert_eq!(charts.len(), 3, "one chart per check:\n{detail}");
    for chart in &charts {
        let lines = polyline_points(chart);
        assert_eq!(lines.len(), 2, "baseline and canary:\n{chart}");
        assert!(lines.iter().all(|n| *n >= 25), "points per line: {lines:?}");
        assert!(
            chart.contains("class=\"threshold\"") || chart.contains("class=\"band"),
            "a threshold or tolerance mark:\n{chart}"
        );
        assert!(chart.contains("baseline (legacy)") && chart.contains("canary (new)"));
    }
    assert!(
        charts[0].contains(" ms<"),
        "latency ticks in ms:\n{}",
        charts[0]
    );
    assert!(
        charts[2].contains("%<"),
        "error-rate ticks in %:\n{}",
        charts[2]
    );
    assert!(
        detail.contains("p-value") && detail.contains("points,"),
        "{detail}"
    );
    assert!(detail.contains("Recent analyses") && detail.contains("History"));
    // The hostile reason is text, not markup: the body (which it would remove) is still there.
    assert!(
        !detail.contains(HOSTILE) && detail.contains("&lt;script&gt;"),
        "{detail}"
    );

    assert!(
        overview.contains("href=\"/rollouts/checkout\""),
        "{overview}"
    );
    assert!(overview.contains("chip-current") || overview.contains("chip-done"));
    assert!(overview.contains("http-equiv=\"refresh\" content=\"10\""));
    assert!(!overview.contains(HOSTILE), "{overview}");
    assert!(
        overview.contains("&lt;script&gt;document.body.remove()&lt;/script&gt;"),
        "{overview}"
    );
    assert!(!overview.contains("EMERGENCY STOP"));

    assert!(missing.contains("Rollout not found"), "{missing}");
    // Every page, the error pages too, carries the policy.
    for page in ["/", "/rollouts/checkout", "/rollouts/no-such-rollout"] {
        let resp = reqwest::get(format!("{base}{page}")).await.unwrap();
        let csp = resp.headers().get("content-security-policy");
        assert_eq!(
            csp.and_then(|v| v.to_str().ok()),
            Some(canaryd::web::CONTENT_SECURITY_POLICY),
            "{page}"
        );
    }
    let status = reqwest::get(format!("{base}/rollouts/no-such-rollout"))
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let bad = reqwest::get(format!("{base}/rollouts/checkout?cursor=abc"))
        .await
        .unwrap()
        .status();
    assert_eq!(bad, 400);
    let newest = store.audit_page("checkout", None, 1).unwrap().items[0].id;
    let older = reqwest::get(format!("{base}/rollouts/checkout?cursor={newest}"))
        .await
        .unwrap();
    assert_eq!(older.status(), 200);
    let older = older.text().await.unwrap();
    assert!(
        older.contains("← Newest") && older.contains("class=\"audit\""),
        "{older}"
    );

    let size = is_png(&shot_path);
    assert!(
        size > 20_000,
        "a {size}-byte screenshot is too small to show the page"
    );
    assert!(is_png(&overview_path) > 5_000);
    // CANARYD_WEB_SCREENSHOTS=DIR keeps both screenshots, to look at them.
    if let Some(keep) = std::env::var_os("CANARYD_WEB_SCREENSHOTS") {
        let keep = std::path::PathBuf::from(keep);
        std::fs::copy(&shot_path, keep.join("rollout.png")).unwrap();
        std::fs::copy(&overview_path, keep.join("overview.png")).unwrap();
    }

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), running).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the daemon did not stop cleanly: {stopped:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pages' policy refuses what they must never run (an inline script, a remote image) and
/// Chromium says so in its log: without this, the pages test's "nothing refused" could not fail.
#[tokio::test]
async fn the_pages_policy_refuses_scripts_and_chromium_logs_the_refusal() {
    let dir = temp_dir("csp");
    let browser = Chromium::find(&dir.join("chromium"));
    let page = "<!DOCTYPE html><html><head><style>p{color:red}</style></head><body>\
                <p style=\"font-weight:bold\">styled</p><img src=\"http://192.0.2.9/x.png\">\
                <script>document.body.setAttribute('data-ran', 'yes')</script></body></html>";
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move {
            (
                [
                    ("content-type", "text/html; charset=utf-8"),
                    (
                        "content-security-policy",
                        canaryd::web::CONTENT_SECURITY_POLICY,
                    ),
                ],
                page,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (dom, log) = tokio::task::spawn_blocking(move || {
        browser.dump_dom_logged("csp", &format!("http://{addr}/"))
    })
    .await
    .unwrap();
    assert!(
        !dom.contains("<body data-ran"),
        "the inline script ran:\n{dom}"
    );
    assert!(
        log.contains("Executing inline script violates the following Content Security Policy"),
        "{log}"
    );
    assert!(
        log.contains("img-src"),
        "the remote image was not refused:\n{log}"
    );
    // What the pages need is allowed: inline styles and style attributes.
    assert!(!log.contains("Applying inline style violates"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A hostile string per field: markup, both quotes and `&`, told apart by `field`.
fn planted(field: &str) -> String {
    format!("<script>alert(\"{field}\")</script>&'")
}

/// How `planted(field)` reads once escaped.
fn escaped(field: &str) -> String {
    format!("&lt;script&gt;alert(&quot;{field}&quot;)&lt;/script&gt;&amp;&#39;")
}

/// Every string a person or a backend controls that reaches a status page, an error page or an
/// HTML email, planted with markup, quotes and `&`: each one must be on the page (so the test
/// sees it) and only as escaped text. Rendered through the crate's own page functions, so no
/// field is left out because a real daemon would refuse it first (rollout names, say).
#[tokio::test]
async fn every_planted_string_comes_out_escaped_on_every_page_and_email() {
    use axum::response::IntoResponse;
    use canaryd::notify::notification::{CheckRow, IncidentAction, Notification, StageInfo};
    use canaryd::rollout::{EventKind, Phase, RolloutState, Severity};
    use canaryd::store::{Analysis, AuditEntry, OutboxCounts, Page, RunRecord};
    use canaryd::web::{RolloutView, StopView, WebError, detail, overview};
    use chrono::DateTime;

    let mut rule = canaryd::rules::parse_rule(
        std::path::Path::new("rules/checkout.toml"),
        RULE,
        &Default::default(),
    )
    .unwrap();
    rule.team = planted("team");
    for (i, stage) in rule.plan.stages.iter_mut().enumerate() {
        stage.name = planted(&format!("stage-{i}"));
    }
    for (i, check) in rule.checks.iter_mut().enumerate() {
        check.spec.name = planted(&format!("check-{i}")).into();
    }
    let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
    let entry = |id: i64, what: &str| AuditEntry {
        id,
        run: 1,
        rollout: planted("rollout"),
        at: t(id),
        action: planted(&format!("{what}-action")),
        previous_weight: Some(10),
        new_weight: Some(50),
        reason: planted(&format!("{what}-reason")),
        triggered_by: planted(&format!("{what}-approver")),
    };
    let view = RolloutView {
        name: planted("rollout"),
        rule: Some(std::sync::Arc::new(rule)),
        state: RolloutState {
            phase: Phase::Progressing { stage: 1 },
            weight: 50,
            stage_started_at: Some(t(0)),
            ..RolloutState::default()
        },
        last: Some(entry(5, "last")),
        rolled_back_stage: None,
    };
    let judged = |check: &str, verdict: Value| {
        json!({
            "name": planted(check),
            "verdict": verdict,
            "reason": planted(&format!("{check}-reason")),
            "evidence": {
                "baseline": {"points": 60, "dropped": 0, "median": 0.1},
                "canary": {"points": 60, "dropped": 1, "median": 0.2,
                           "aggregate": {"aggregate": planted("aggregate"), "value": 0.3}},
                "effect": {"ratio": 1.2, "difference": 0.1,
                           "interval": {"low": 1.1, "high": 1.3, "confidence": 0.99,
                                        "scale": planted("scale")}},
                "p_value": 0.01,
                "test": planted("test"),
                "comparison": planted("comparison"),
                "thresholds": {"direction": planted("direction"), "confidence": 0.99,
                               "min_samples": 3, "threshold": 0.25},
            }
        })
    };
    let checks = json!([
        judged("check-0", json!({"outcome": "fail"})),
        judged(
            "check-1",
            json!({"outcome": "inconclusive", "reason": "x", "cause": planted("cause")})
        ),
        judged("check-2", json!({"outcome": planted("check-outcome")})),
    ]);
    let series = json!([{"check": planted("check-0"), "t0": 1_700_000_000.0,
        "baseline": [[0.0, 0.1], [30.0, 0.12]], "canary": [[0.0, 0.2], [30.0, 0.3]]}]);
    let analyses = [Analysis {
        run: 1,
        id: 2,
        rollout: planted("rollout"),
        at: t(100),
        outcome: planted("analysis-outcome"),
        score: Some(40.0),
        evidence: json!({"checks": checks, "series": series}),
    }];
    let history = Page {
        items: vec![entry(9, "history")],
        next: Some("9".parse().unwrap()),
    };
    let runs = [
        RunRecord {
            run: 2,
            canary: planted("canary-version"),
            started_at: t(1),
            started_by: planted("run-starter"),
            last_action: Some(planted("run-last-action")),
            last_at: Some(t(3)),
        },
        RunRecord {
            run: 1,
            canary: "v1".into(),
            started_at: t(0),
            started_by: "alice".into(),
            last_action: None,
            last_at: None,
        },
    ];
    let stop = StopView {
        active: true,
        reason: planted("stop-reason"),
    };
    let problems = [planted("rule-file-problem")];
    let detail = detail::render(&detail::Detail {
        rollout: &view,
        analyses: &analyses,
        history: &history,
        runs: &runs,
        run: 1,
        paged: true,
        stop: &stop,
        rule_file_problems: &problems,
        audit: &[],
        public_url: None,
        now: t(400),
    });
    let overview = overview::render(&overview::Overview {
        rollouts: std::slice::from_ref(&view),
        stop: &stop,
        outbox: Some(OutboxCounts {
            pending: 1,
            sent: 2,
            failed: 3,
            superseded: 0,
        }),
        now: t(400),
    });
    let mut errors = String::new();
    for error in [
        WebError::UnknownRollout(planted("unknown-rollout")),
        WebError::BadCursor(planted("bad-cursor")),
    ] {
        let body = error.into_response().into_body();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        errors.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    let email = canaryd::notify::content::html(&Notification {
        scope: canaryd::notify::Scope::Rollout,
        rollout: planted("email-rollout"),
        team: planted("email-team"),
        event: EventKind::Paused,
        severity: Severity::Warning,
        incident: IncidentAction::Trigger,
        group_key: "k".into(),
        at: t(0),
        message: planted("email-message"),
        phase: planted("email-phase"),
        stage: Some(StageInfo {
            number: 1,
            of: 3,
            name: planted("email-stage"),
            weight: 10,
        }),
        weight: 10,
        checks: vec![CheckRow {
            check: planted("email-check"),
            verdict: planted("email-verdict"),
            reason: planted("email-check-reason"),
            measure: planted("email-measure"),
            baseline: Some(0.1),
            canary: Some(0.2),
            ratio: Some(2.0),
            difference: None,
            limit: None,
            p_value: Some(0.01),
            confidence: 0.99,
            test: Some(planted("email-test")),
        }],
        status_url: Some(planted("email-url")),
        commands: vec![planted("email-command")],
    });

    let pages = [
        ("detail", detail.as_str()),
        ("overview", overview.as_str()),
        ("error pages", errors.as_str()),
        ("email", email.as_str()),
    ];
    for (what, page) in pages {
        assert!(!page.contains("<script"), "{what} has raw markup:\n{page}");
        assert!(
            !page.contains("alert(\""),
            "{what} has a raw quote:\n{page}"
        );
        assert!(!page.contains("&'"), "{what} has a raw `&`:\n{page}");
    }
    let expected: &[(&str, &[&str])] = &[
        (
            "detail",
            &[
                "rollout",
                "team",
                "stage-0",
                "stage-1",
                "stage-2",
                "check-0",
                "check-1",
                "check-2",
                "check-0-reason",
                "check-1-reason",
                "aggregate",
                "scale",
                "test",
                "comparison",
                "direction",
                "cause",
                "check-outcome",
                "analysis-outcome",
                "history-action",
                "history-reason",
                "history-approver",
                "canary-version",
                "run-starter",
                "run-last-action",
                "stop-reason",
                "rule-file-problem",
            ],
        ),
        (
            "overview",
            &[
                "rollout",
                "stage-0",
                "stage-1",
                "last-action",
                "last-reason",
                "last-approver",
                "stop-reason",
            ],
        ),
        ("error pages", &["unknown-rollout", "bad-cursor"]),
        (
            "email",
            &[
                "email-rollout",
                "email-team",
                "email-message",
                "email-phase",
                "email-stage",
                "email-check",
                "email-verdict",
                "email-check-reason",
                "email-url",
                "email-command",
            ],
        ),
    ];
    for (what, fields) in expected {
        let page = pages.iter().find(|(name, _)| name == what).unwrap().1;
        for field in *fields {
            assert!(
                page.contains(&escaped(field)),
                "{what} does not show `{field}` escaped:\n{page}"
            );
        }
    }
}
