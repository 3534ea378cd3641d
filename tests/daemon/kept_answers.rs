//! Issue 19 point 1, "the backend is asked only for what is new", through the embedded daemon on
//! paused time with its real store: a staged latency check is judged on its whole stage at every
//! analysis, but after the stage's first analyses each one asks the metric source only for the
//! last few minutes (the points before come from what the previous analysis kept in the store),
//! and a restarted daemon resumes from the store too instead of asking for the whole stage again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::api_support::daemon_support::*;
use canaryd::judge::Point;
use canaryd::source::{MemorySource, MetricSource, Request, Series};

/// One stage that lasts an hour, analysed every 10 s, one staged relative latency check.
const RULE: &str = r#"
[rollout]
name = "steady"
team = "tests"
source = "prometheus"
actuator = "builtin"

[analysis]
every = "10s"
warmup = "0s"
max_inconclusive = 1000

[[stages]]
name = "10%"
weight = 10
min_duration = "1h"

[[stages]]
name = "100%"
weight = 100
min_duration = "1m"

[sides]
label = "version"
baseline = "base"
canary = "new"

[[checks]]
name = "latency"
kind = "relative"
direction = "higher-is-worse"
tolerance = 0.5
query = 'latency_seconds{ {{label}}="{{side}}" }'
window = "30s"
step = "10s"
action = "pause"
"#;

/// Every range the source was asked for the canary's latency: (start, end).
type Asked = Arc<Mutex<Vec<(DateTime<Utc>, DateTime<Utc>)>>>;

/// 0.1 s of latency on both sides with a small wobble, a point per 10 s over the asked range.
fn source(asked: &Asked) -> Arc<dyn MetricSource> {
    let asked = Arc::clone(asked);
    Arc::new(MemorySource::from_fn("prometheus", move |request| {
        let Request::Range {
            query, start, end, ..
        } = request
        else {
            return Ok(Vec::new());
        };
        if query.contains("\"new\"") {
            asked.lock().unwrap().push((*start, *end));
        }
        let mut points = Vec::new();
        let mut t = *start;
        while t <= *end {
            let k = t.timestamp() / 10;
            let v = 0.1 * (1.0 + 0.03 * ((k * 7 % 5) as f64 - 2.0));
            points.push(Point {
                t: t.timestamp_millis() as f64 / 1000.0,
                v,
            });
            t += chrono::Duration::seconds(10);
        }
        Ok(vec![Series {
            labels: BTreeMap::new(),
            points,
        }])
    }))
}

/// The canary points the latest analysis judged, through the API.
async fn judged_points(base: &str) -> Option<u64> {
    let url = format!("{base}/v1/rollouts/steady/analyses?limit=1");
    let v: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    v["analyses"][0]["evidence"]["checks"][0]["evidence"]["canary"]["points"].as_u64()
}

async fn asks_at_least(asked: &Asked, n: usize) {
    wait_for("more analyses", Duration::from_secs(3600), || async {
        (asked.lock().unwrap().len() >= n).then_some(())
    })
    .await;
}

/// A query asked from `start` to `end` asks at most the overlap (2 minutes), a quarter of the
/// stage (what the store may lag behind) and the steps since the previous analysis.
fn assert_asked_little(stage_from: DateTime<Utc>, start: DateTime<Utc>, end: DateTime<Utc>) {
    let stage = (end - stage_from).num_seconds();
    let asked = (end - start).num_seconds();
    assert!(
        asked <= 120 + stage / 4 + 20,
        "asked {asked} s of a {stage} s stage"
    );
}

#[tokio::test(start_paused = true)]
async fn each_analysis_asks_only_for_the_new_minutes_across_a_restart_too() {
    let dir = temp_dir("kept-answers");
    let config = write_config(&dir, "http://127.0.0.1:9", "http://127.0.0.1:9/weights");
    std::fs::write(dir.join("rules/steady.toml"), RULE).unwrap();
    let asked: Asked = Arc::default();
    let sources = || BTreeMap::from([("prometheus".to_string(), source(&asked))]);

    let daemon = embed_with_sources(&config, sources()).await;
    asks_at_least(&asked, 30).await;
    let stage_from = asked.lock().unwrap()[0].0;
    // Five minutes into the stage: the whole stage is judged (30 points or more)...
    let judged = wait_for("a judged analysis", Duration::from_secs(60), || async {
        judged_points(&daemon.base).await.filter(|n| *n >= 30)
    })
    .await;
    // ...but once the stage is older than the overlap, each analysis asks only for its last
    // minutes: from 2 minutes before the newest point kept in the store (rewritten once a quarter
    // of the stage is newer), never the whole stage.
    let ranges = asked.lock().unwrap().clone();
    let later = &ranges[24..];
    for &(start, end) in later {
        assert!(
            start > stage_from,
            "asked the whole stage again: {ranges:?}"
        );
        assert_asked_little(stage_from, start, end);
    }
    daemon.shutdown.cancel();
    daemon.running.await.unwrap().unwrap();

    // Restarted: the first analysis resumes from what the store kept.
    let before = asked.lock().unwrap().len();
    let daemon = embed_with_sources(&config, sources()).await;
    asks_at_least(&asked, before + 2).await;
    let (start, end) = asked.lock().unwrap()[before];
    assert!(start > stage_from, "the restart asked for the whole stage");
    assert_asked_little(stage_from, start, end);
    let judged_after = wait_for("a judged analysis", Duration::from_secs(60), || async {
        judged_points(&daemon.base).await.filter(|n| *n > judged)
    })
    .await;
    assert!(judged_after > judged);
    daemon.shutdown.cancel();
    daemon.running.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
