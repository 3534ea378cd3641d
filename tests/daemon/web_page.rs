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
min_samples = 5

[[checks]]
name = "errors"
kind = "error-rate"
tolerance = 0.01
errors_query = 'errors{ {{label}}="{{side}}" }'
total_query = 'requests{ {{label}}="{{side}}" }'
window = "1m"
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
    wait_for("three analyses", Duration::from_secs(30), || async {
        let page = store.analyses_page("checkout", None, 10).unwrap();
        (page.items.len() >= 3).then_some(())
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
        let detail = browser.dump_dom("detail", &format!("{pages}/rollouts/checkout"));
        let overview = browser.dump_dom("overview", &format!("{pages}/"));
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
