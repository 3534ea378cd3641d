//! How an analysis reads its queries' answers, end to end through [`analyse`] on canned
//! answers (issue 18, point 4): an absent errors series beside totals, and a query answering
//! several series.

use std::sync::Arc;

use chrono::DateTime;
use tokio::sync::Semaphore;

use super::{Analysed, analyse};
use crate::judge::{InconclusiveCause, Point, Verdict};
use crate::rollout::{AnalysisOutcome, CheckOutcome};
use crate::rules::RolloutRule;
use crate::source::Series;

/// A rule with an error-rate check and a relative latency check, for the tests of how
/// answers are read (issue 18, point 4).
fn errors_and_latency_rule() -> RolloutRule {
    use crate::rules::{KnownNames, parse_rule};
    let text = r#"
[rollout]
name = "web"
team = "t"
source = "prometheus"
actuator = "builtin"
[analysis]
every = "1m"
[[stages]]
name = "10%"
weight = 10
[sides]
baseline = "base"
canary = "new"
[[checks]]
name = "errors"
kind = "error-rate"
tolerance = 0.01
errors_query = 'sum(increase(http_requests_total{version="{{side}}", code=~"5.."}[{{step}}]))'
total_query = 'sum(increase(http_requests_total{version="{{side}}"}[{{step}}]))'
window = "30m"
step = "1m"
[[checks]]
name = "latency"
kind = "relative"
tolerance = 0.1
query = 'histogram_quantile(0.99, sum by (le, pod) (rate(latency_bucket{version="{{side}}"}[{{step}}])))'
window = "30m"
step = "1m"
"#;
    parse_rule(std::path::Path::new("web.toml"), text, &KnownNames::any()).unwrap()
}

/// Answers one series per query (`labels` for each series asked for by `several`), a point
/// per step: 1000 requests, 2 errors on the baseline, none on the canary, whose 5xx series
/// does not exist.
async fn analysed_with(several: &'static str, rule: &RolloutRule) -> Analysed {
    use crate::source::{MemorySource, Request};
    let source = MemorySource::from_fn("prometheus", move |request| {
        let Request::Range {
            query,
            start,
            end,
            step,
        } = request
        else {
            return Ok(vec![]);
        };
        let canary = query.contains("\"new\"");
        let errors = query.contains("5..");
        if canary && errors {
            return Ok(vec![]);
        }
        let value = if errors {
            2.0
        } else if query.contains("latency") {
            0.25
        } else {
            1000.0
        };
        let step = chrono::Duration::from_std(*step).unwrap();
        let mut points = Vec::new();
        let mut t = *start;
        while t <= *end {
            let wobble = (t.timestamp() / 60 % 3) as f64 * 0.01;
            points.push(Point {
                t: t.timestamp() as f64,
                v: value * (1.0 + wobble),
            });
            t += step;
        }
        let pods: &[&str] = if query.contains(several) {
            &["a", "b"]
        } else {
            &[""]
        };
        Ok(pods
            .iter()
            .map(|pod| Series {
                labels: if pod.is_empty() {
                    Default::default()
                } else {
                    [("pod".to_string(), pod.to_string())].into()
                },
                points: points.clone(),
            })
            .collect())
    });
    let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    analyse(rule, Arc::new(source), Arc::new(Semaphore::new(4)), now, 10)
        .await
        .unwrap()
}

/// Issue 18, point 4: a healthy canary whose 5xx series was never created (its errors query
/// answers no series) while its totals show 30 steps of requests has 0 errors, is judged
/// (and passes) instead of being "no data" forever, and the evidence says how it was read.
#[tokio::test]
async fn an_absent_errors_series_beside_totals_is_zero_errors_and_said_so() {
    let rule = errors_and_latency_rule();
    let analysed = analysed_with("no query matches this", &rule).await;
    let errors = &analysed.results[0];
    assert_eq!(errors.verdict, Verdict::Pass, "{errors:?}");
    assert_eq!(errors.evidence.canary.errors, Some(0.0));
    assert_eq!(errors.evidence.canary.points, 30);
    assert_eq!(
        errors.evidence.notes,
        ["canary: errors query returned no series: 0 errors over 30300 requests (30 steps)"]
    );
    assert!(analysed.results[0].evidence.baseline.errors > Some(0.0));
    // The note is in the evidence the API and the page read.
    let evidence = analysed.record.evidence.get();
    assert!(
        evidence.contains("canary: errors query returned no series"),
        "{evidence}"
    );
    assert_eq!(analysed.report.overall, AnalysisOutcome::Pass);
}

/// Issue 18, point 4: a query answering two series (a `pod` label left in its aggregation)
/// is refused with a typed cause naming the query and both label sets, never judged on the
/// first series; the other checks are judged as usual.
#[tokio::test]
async fn a_query_answering_several_series_is_refused_naming_them() {
    let rule = errors_and_latency_rule();
    let analysed = analysed_with("latency", &rule).await;
    let latency = &analysed.results[1];
    assert_eq!(
        latency.verdict.cause(),
        Some(InconclusiveCause::SeveralSeries),
        "{latency:?}"
    );
    for needle in [
        "baseline: query `histogram_quantile(0.99, sum by (le, pod)",
        "returned 2 series ({pod=\"a\"}, {pod=\"b\"})",
    ] {
        assert!(
            latency.reason.contains(needle),
            "{needle}: {}",
            latency.reason
        );
    }
    assert_eq!(analysed.results[0].verdict, Verdict::Pass);
    assert_eq!(
        analysed.report.checks[1],
        CheckOutcome::inconclusive("latency", InconclusiveCause::SeveralSeries)
    );
}
