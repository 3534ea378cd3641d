//! The simulator as a metric source, for `canaryd demo`: answers a small fixed vocabulary of
//! queries from the simulators' own per-second snapshots, with no PromQL and no Prometheus.
//!
//! A query is `NAME{service="S", version="V"}` with NAME one of [`NAMES`]; `V` is `baseline` or
//! `canary`. Each point at time t (every `step` of a range) is computed from the snapshots at or
//! before t: `requests` and `errors` count what happened in the step ending at t (so summing a
//! window's points counts each request once), `latency_pNN_seconds` is the NN-th percentile over
//! the [`QUANTILE_WINDOW`] ending at t, interpolated in the histogram's buckets as Prometheus's
//! `histogram_quantile` does, and `memory_bytes` and `queue_depth` are the gauges at t. A silent
//! version, or a time with no snapshot yet, has no point. It must not be mistaken for the
//! Prometheus source: the end-to-end tests use a real Prometheus.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{BUCKETS, SideCounters, Simulator, Snapshot, Version};
use crate::judge::Point;
use crate::source::{MemorySource, Request, Series, SourceError};

/// The query names the simulator answers.
pub const NAMES: [&str; 5] = [
    "requests",
    "errors",
    "latency_pNN_seconds",
    "memory_bytes",
    "queue_depth",
];
/// The span each latency percentile is computed over.
pub const QUANTILE_WINDOW: Duration = Duration::from_millis(500);
/// A snapshot older than this at a point's time gives no point (the service stopped reporting).
const STALE: f64 = 5.0;

/// What is wrong with a query the simulator was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimQueryError {
    #[error("expected NAME{{service=\"S\", version=\"baseline|canary\"}}: {0}")]
    Syntax(String),
    #[error("unknown query name `{0}`; the simulator answers {names}", names = NAMES.join(", "))]
    UnknownName(String),
    #[error("no simulated service `{0}`; the simulator serves {1}")]
    UnknownService(String, String),
    #[error("unknown version `{0}`: use `baseline` or `canary`")]
    UnknownVersion(String),
}

/// What a parsed query asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Measure {
    Requests,
    Errors,
    Quantile(f64),
    Memory,
    Queue,
}

#[derive(Debug, Clone, PartialEq)]
struct Query {
    measure: Measure,
    service: String,
    version: Version,
}

fn parse(text: &str) -> Result<Query, SimQueryError> {
    let text = text.trim();
    let (name, rest) = text
        .split_once('{')
        .ok_or_else(|| SimQueryError::Syntax(format!("no `{{` in `{text}`")))?;
    let body = rest
        .trim_end()
        .strip_suffix('}')
        .ok_or_else(|| SimQueryError::Syntax(format!("`{text}` does not end with `}}`")))?;
    let mut labels = BTreeMap::new();
    for pair in body.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| SimQueryError::Syntax(format!("`{pair}` is not label=\"value\"")))?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(|| SimQueryError::Syntax(format!("the value of `{pair}` is not quoted")))?;
        labels.insert(k.trim().to_string(), v.to_string());
    }
    let name = name.trim();
    let measure = match name {
        "requests" => Measure::Requests,
        "errors" => Measure::Errors,
        "memory_bytes" => Measure::Memory,
        "queue_depth" => Measure::Queue,
        other => {
            let digits = other
                .strip_prefix("latency_p")
                .and_then(|r| r.strip_suffix("_seconds"))
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| SimQueryError::UnknownName(other.to_string()))?;
            let q: f64 = format!("0.{digits}")
                .parse()
                .map_err(|_| SimQueryError::UnknownName(other.to_string()))?;
            Measure::Quantile(q)
        }
    };
    let label = |k: &str| {
        labels
            .get(k)
            .cloned()
            .ok_or_else(|| SimQueryError::Syntax(format!("the label `{k}` is missing in `{text}`")))
    };
    let version = match label("version")?.as_str() {
        "baseline" => Version::Baseline,
        "canary" => Version::Canary,
        other => return Err(SimQueryError::UnknownVersion(other.to_string())),
    };
    Ok(Query {
        measure,
        service: label("service")?,
        version,
    })
}

/// The quantile `q` of the latencies counted between two cumulative histograms, interpolated
/// linearly within the bucket holding it (Prometheus's `histogram_quantile`); NaN with no
/// requests.
pub fn histogram_quantile(q: f64, before: &SideCounters, after: &SideCounters) -> f64 {
    let delta: Vec<f64> = after
        .buckets
        .iter()
        .zip(&before.buckets)
        .map(|(a, b)| a.saturating_sub(*b) as f64)
        .collect();
    let total = delta.last().copied().unwrap_or(0.0);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for (i, count) in delta.iter().enumerate() {
        let Some(upper) = BUCKETS.get(i) else {
            // The +Inf bucket: the highest finite bound, as Prometheus answers.
            return BUCKETS[BUCKETS.len() - 1];
        };
        if *count >= rank {
            let inside = count - below;
            return if inside > 0.0 {
                lower + (upper - lower) * (rank - below) / inside
            } else {
                *upper
            };
        }
        lower = *upper;
        below = *count;
    }
    BUCKETS[BUCKETS.len() - 1]
}

/// The latest snapshot of `version` at or before `t`, if not stale.
fn at(snapshots: &[Snapshot], t: f64, version: Version) -> Option<&SideCounters> {
    let i = snapshots.partition_point(|s| s.t <= t);
    let s = snapshots.get(i.checked_sub(1)?)?;
    if t - s.t > STALE {
        return None;
    }
    s.sides[super::index(version)].as_ref()
}

/// One point of `query` at `t` with the step `step` (seconds).
fn point(query: &Query, snapshots: &[Snapshot], t: f64, step: f64) -> Option<f64> {
    let now = at(snapshots, t, query.version)?;
    let back = |span: f64| {
        let i = snapshots.partition_point(|s| s.t <= t - span);
        snapshots.get(i.checked_sub(1)?)?.sides[super::index(query.version)].as_ref()
    };
    let v = match query.measure {
        Measure::Memory => now.memory_bytes,
        Measure::Queue => now.queue_depth,
        Measure::Requests => now.requests().saturating_sub(back(step)?.requests()) as f64,
        Measure::Errors => now.errors.saturating_sub(back(step)?.errors) as f64,
        Measure::Quantile(q) => {
            let before = back(step.max(QUANTILE_WINDOW.as_secs_f64()))?;
            histogram_quantile(q, before, now)
        }
    };
    v.is_finite().then_some(v)
}

fn evaluate(
    sims: &BTreeMap<String, Arc<Simulator>>,
    request: &Request,
) -> Result<Vec<Series>, SimQueryError> {
    let query = parse(request.query())?;
    let sim = sims.get(&query.service).ok_or_else(|| {
        SimQueryError::UnknownService(
            query.service.clone(),
            sims.keys().cloned().collect::<Vec<_>>().join(", "),
        )
    })?;
    let seconds = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis() as f64 / 1000.0;
    let (start, end, step) = match request {
        Request::Range {
            start, end, step, ..
        } => (seconds(*start), seconds(*end), step.as_secs_f64()),
        Request::Instant { at, .. } => (seconds(*at), seconds(*at), 1.0),
    };
    let lookback = step.max(QUANTILE_WINDOW.as_secs_f64()) + STALE;
    let snapshots = sim.snapshots(start - lookback, end);
    let mut points = Vec::new();
    let mut t = start;
    while t <= end {
        if let Some(v) = point(&query, &snapshots, t, step) {
            points.push(Point { t, v });
        }
        t += step;
    }
    if points.is_empty() {
        return Ok(vec![]);
    }
    let labels = BTreeMap::from([
        ("service".to_string(), query.service.clone()),
        (
            "version".to_string(),
            super::version_label(query.version).to_string(),
        ),
    ]);
    Ok(vec![Series { labels, points }])
}

/// A metric source named `name` answering from `sims` (keyed by their service names).
pub fn sim_source(name: &str, sims: &[Arc<Simulator>]) -> MemorySource {
    let sims: BTreeMap<String, Arc<Simulator>> = sims
        .iter()
        .map(|s| (s.service().to_string(), Arc::clone(s)))
        .collect();
    let source_name = name.to_string();
    MemorySource::from_fn(name, move |request| {
        evaluate(&sims, request).map_err(|e| SourceError::InvalidRequest {
            source_name: source_name.clone(),
            query: request.query().to_string(),
            detail: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Behaviour, Profile};
    use crate::source::MetricSource;
    use chrono::{DateTime, Utc};

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    /// A simulator with `per_second` requests on each side for seconds 100..=120.
    fn filled(per_second: usize, canary: Behaviour) -> Arc<Simulator> {
        let sim = Arc::new(Simulator::new("shop", Profile::default(), 5));
        sim.set_behaviour(Version::Canary, canary);
        for s in 100..=120 {
            for _ in 0..per_second {
                sim.handle(Version::Baseline);
                sim.handle(Version::Canary);
            }
            sim.tick(t(s));
        }
        sim
    }

    async fn range(source: &MemorySource, q: &str) -> Result<Vec<Series>, SourceError> {
        source
            .query_range(q, t(110), t(120), Duration::from_secs(1))
            .await
    }

    #[tokio::test]
    async fn counts_per_step_sum_to_the_requests_of_the_window() {
        let sim = filled(100, Behaviour::Healthy);
        let source = sim_source("sim", &[sim]);
        let got = range(&source, r#"requests{service="shop", version="canary"}"#)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].points.len(), 11);
        let total: f64 = got[0].points.iter().map(|p| p.v).sum();
        assert_eq!(total, 1100.0, "each second's 100 requests counted once");
        assert_eq!(got[0].labels["version"], "canary");
    }

    #[tokio::test]
    async fn a_slower_canary_shows_a_higher_p99_and_a_silent_one_nothing() {
        let sim = filled(400, Behaviour::Slower { factor: 1.5 });
        let source = sim_source("sim", &[Arc::clone(&sim)]);
        let p99 = |v: &str| format!(r#"latency_p99_seconds{{service="shop",version="{v}"}}"#);
        let b = range(&source, &p99("baseline")).await.unwrap();
        let c = range(&source, &p99("canary")).await.unwrap();
        let mean = |s: &[Series]| s[0].points.iter().map(|p| p.v).sum::<f64>() / 11.0;
        let ratio = mean(&c) / mean(&b);
        assert!((1.3..1.7).contains(&ratio), "p99 ratio {ratio}");
        assert!((0.06..0.1).contains(&mean(&b)), "baseline p99 {}", mean(&b));
        sim.set_behaviour(Version::Canary, Behaviour::Silent);
        sim.tick(t(121));
        let silent = source.query_instant(&p99("canary"), t(121)).await.unwrap();
        assert!(silent.is_empty(), "{silent:?}");
    }

    #[tokio::test]
    async fn bad_queries_say_what_the_simulator_answers() {
        let source = sim_source("sim", &[filled(1, Behaviour::Healthy)]);
        let cases = [
            (
                "cpu{service=\"shop\",version=\"canary\"}",
                "unknown query name `cpu`",
            ),
            (
                "errors{service=\"cart\",version=\"canary\"}",
                "no simulated service `cart`",
            ),
            (
                "errors{service=\"shop\",version=\"v2\"}",
                "unknown version `v2`",
            ),
            ("errors{service=\"shop\"}", "the label `version` is missing"),
            ("errors", "no `{`"),
        ];
        for (q, want) in cases {
            let e = range(&source, q).await.unwrap_err();
            assert!(matches!(e, SourceError::InvalidRequest { .. }), "{e}");
            assert!(e.to_string().contains(want), "{q}: {e}");
        }
    }

    #[test]
    fn histogram_quantile_interpolates_within_the_bucket() {
        let profile = Profile::default();
        let before = SideCounters::new(&profile);
        let mut after = before.clone();
        // 10 requests at <= 0.01 and 10 in (0.01, 0.02].
        for (i, b) in after.buckets.iter_mut().enumerate() {
            *b = if i == 0 { 10 } else { 20 };
        }
        assert!((histogram_quantile(0.5, &before, &after) - 0.01).abs() < 1e-12);
        assert!((histogram_quantile(0.75, &before, &after) - 0.015).abs() < 1e-12);
        assert!(histogram_quantile(0.5, &before, &before).is_nan());
    }
}
