//! Issue 18, point 4, through the embedded daemon, the Prometheus source over HTTP and the API,
//! on paused time: a stand-in Prometheus whose canary never created its 5xx series (the errors
//! query answers no series while the totals show 1,000 requests a step), and whose latency query
//! matches two series (one per pod).
//! - `healthy` (error-rate and error-rate-absolute checks): the canary's errors are read as 0 over
//!   its requests, the analysis passes, the evidence says how the errors were read, and the
//!   rollout advances instead of holding on "no data" forever;
//! - `ambiguous` (a latency check whose query keeps a `pod` label): refused as inconclusive with
//!   the cause `several-series` and both label sets named, never judged on the first series;
//!   the rollout holds at its first stage.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::Query;
use serde_json::{Value, json};

use crate::api_support::daemon_support::{embed, rollout, temp_dir, wait_for, write_config};

/// A rule whose stages take a second each; `checks` are its `[[checks]]` tables.
fn rule(name: &str, checks: &str) -> String {
    format!(
        r#"[rollout]
name = "{name}"
team = "tests"
source = "prometheus"
actuator = "builtin"

[analysis]
every = "1s"
max_inconclusive = 100

[[stages]]
name = "10%"
weight = 10
min_duration = "1s"

[[stages]]
name = "50%"
weight = 50
min_duration = "1s"

[sides]
baseline = "base"
canary = "new"
{checks}"#
    )
}

const ERROR_CHECKS: &str = r#"
[[checks]]
name = "errors"
kind = "error-rate"
tolerance = 0.01
errors_query = 'sum(increase(http_requests_total{version="{{side}}", code=~"5.."}[{{step}}]))'
total_query = 'sum(increase(http_requests_total{version="{{side}}"}[{{step}}]))'
window = "5s"
step = "1s"
critical = true

[[checks]]
name = "error-budget"
kind = "error-rate-absolute"
threshold = 0.01
errors_query = 'sum(increase(http_requests_total{version="{{side}}", code=~"5.."}[{{step}}]))'
total_query = 'sum(increase(http_requests_total{version="{{side}}"}[{{step}}]))'
window = "5s"
step = "1s"
critical = true
"#;

const LATENCY_CHECK: &str = r#"
[[checks]]
name = "latency"
kind = "relative"
tolerance = 0.1
min_samples = 3
query = 'max by (pod) (latency_seconds{version="{{side}}"})'
window = "5s"
step = "1s"
critical = true
"#;

/// Answer `query_range` (GET only: a combined POST is refused, so the source asks one query at
/// a time) with a point per step: the canary's 5xx query has no series, the baseline's 2 errors
/// a step, requests 1,000 a step, latency 0.1 s on two pods.
async fn query_range(Query(q): Query<HashMap<String, String>>) -> axum::Json<Value> {
    let query = q.get("query").cloned().unwrap_or_default();
    let number = |key: &str| {
        q.get(key)
            .and_then(|s| s.trim_end_matches('s').parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (start, end, step) = (number("start"), number("end"), number("step").max(1.0));
    let canary = query.contains("\"new\"");
    let errors = query.contains("5..");
    let (value, pods): (f64, &[&str]) = match (canary, errors) {
        (true, true) => (0.0, &[]),
        (false, true) => (2.0, &[""]),
        _ if query.contains("latency") => (0.1, &["a", "b"]),
        _ => (1000.0, &[""]),
    };
    let mut values = Vec::new();
    let mut t = start; // as Prometheus evaluates: start, start + step, ..., end
    while t <= end {
        values.push(json!([t, value.to_string()]));
        t += step;
    }
    let result: Vec<Value> = pods
        .iter()
        .map(|pod| {
            let metric = if pod.is_empty() {
                json!({})
            } else {
                json!({ "pod": pod })
            };
            json!({"metric": metric, "values": values})
        })
        .collect();
    axum::Json(json!({
        "status": "success",
        "data": {"resultType": "matrix", "result": result}
    }))
}

async fn stand_in_prometheus() -> String {
    let app = axum::Router::new().route("/api/v1/query_range", axum::routing::get(query_range));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// The checks of the latest analysis of `name`, as the API answers them.
async fn latest_checks(base: &str, name: &str) -> Option<Vec<Value>> {
    let v: Value = reqwest::get(format!("{base}/v1/rollouts/{name}/analyses?limit=1"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["analyses"][0]["evidence"]["checks"].as_array().cloned()
}

#[tokio::test(start_paused = true)]
async fn an_absent_5xx_series_is_zero_errors_and_a_query_matching_two_series_is_refused() {
    let dir = temp_dir("absent-series");
    std::fs::write(
        dir.join("rules/healthy.toml"),
        rule("healthy", ERROR_CHECKS),
    )
    .unwrap();
    std::fs::write(
        dir.join("rules/ambiguous.toml"),
        rule("ambiguous", LATENCY_CHECK),
    )
    .unwrap();
    let prometheus = stand_in_prometheus().await;
    let path = write_config(&dir, &prometheus, "http://127.0.0.1:9/weights");
    let daemon = embed(&path).await;
    let base = daemon.base.clone();

    // The healthy canary advances past its first stage on analyses that judged its errors.
    wait_for(
        "healthy to advance to 50%",
        Duration::from_secs(30),
        || async { rollout(&base, "healthy").await.filter(|r| r.weight >= 50) },
    )
    .await;
    let checks = latest_checks(&base, "healthy").await.unwrap();
    for check in &checks {
        assert_eq!(check["verdict"]["outcome"], "pass", "{check}");
        assert_eq!(check["evidence"]["canary"]["errors"], 0.0, "{check}");
        let requests = check["evidence"]["canary"]["total"].as_f64().unwrap();
        assert!(requests >= 5000.0, "{check}");
        let notes = check["evidence"]["notes"].to_string();
        let note = format!(
            "canary: errors query returned no series: 0 errors over {requests:.0} requests"
        );
        assert!(notes.contains(&note), "{check}");
        // The baseline's errors series exists: read as it is, without a note.
        assert!(!notes.contains("baseline"), "{check}");
    }
    assert_eq!(checks.len(), 2);

    // The query matching two series is refused, naming both label sets; the rollout holds.
    let refused = wait_for(
        "ambiguous to be analysed",
        Duration::from_secs(30),
        || async { latest_checks(&base, "ambiguous").await?.into_iter().next() },
    )
    .await;
    assert_eq!(refused["verdict"]["outcome"], "inconclusive", "{refused}");
    assert_eq!(refused["verdict"]["cause"], "several-series", "{refused}");
    let reason = refused["reason"].as_str().unwrap();
    for needle in [
        "baseline: query `max by (pod) (latency_seconds{version=\"base\"})`",
        "returned 2 series ({pod=\"a\"}, {pod=\"b\"})",
    ] {
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
    let ambiguous = rollout(&base, "ambiguous").await.unwrap();
    assert_eq!(
        (ambiguous.phase.as_str(), ambiguous.weight),
        ("progressing", 10)
    );

    daemon.shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), daemon.running).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
