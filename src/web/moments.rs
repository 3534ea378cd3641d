//! Moments on a check's chart: when the canary's weight changed (a stage advanced, was
//! approved or promoted, a rollback) from the audit trail, and when the check began failing
//! from the recorded analyses, drawn by [`super::chart`] as labelled vertical lines so a person
//! sees what happened when in the window the verdict was drawn from. Pure: records in, [`Mark`]s
//! out.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::chart::{Mark, MomentKind};
use crate::store::{Analysis, AuditEntry};

fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// The stage changes of a run: every audit entry that moved the weight.
pub fn stage_changes(audit: &[AuditEntry]) -> Vec<Mark> {
    audit
        .iter()
        .filter_map(|e| match (e.previous_weight, e.new_weight) {
            (Some(from), Some(to)) if from != to => Some(Mark::Moment {
                t: seconds(e.at),
                kind: MomentKind::Stage,
                label: format!("{} {from}% → {to}%", e.action),
            }),
            _ => None,
        })
        .collect()
}

/// When check `name` began failing: the analyses (any order) where its verdict is `fail` and
/// the one before it was not.
pub fn failures(name: &str, analyses: &[Analysis]) -> Vec<Mark> {
    let mut by_time: Vec<&Analysis> = analyses.iter().collect();
    by_time.sort_by_key(|a| a.at);
    let failed = |a: &Analysis| {
        a.evidence
            .get("checks")
            .and_then(Value::as_array)
            .and_then(|checks| {
                checks
                    .iter()
                    .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|c| c.pointer("/verdict/outcome"))
            .and_then(Value::as_str)
            == Some("fail")
    };
    let mut out = Vec::new();
    let mut before = false;
    for a in by_time {
        let now = failed(a);
        if now && !before {
            out.push(Mark::Moment {
                t: seconds(a.at),
                kind: MomentKind::Fail,
                label: format!("{name} failed"),
            });
        }
        before = now;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::chart::{self, Chart, Unit};
    use serde_json::json;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn entry(s: i64, action: &str, from: u8, to: u8) -> AuditEntry {
        AuditEntry {
            id: s,
            run: 1,
            rollout: "shop".into(),
            at: at(s),
            action: action.into(),
            previous_weight: Some(from),
            new_weight: Some(to),
            reason: String::new(),
            triggered_by: "schedule".into(),
        }
    }

    fn analysis(s: i64, verdict: &str) -> Analysis {
        Analysis {
            run: 1,
            id: s,
            rollout: "shop".into(),
            at: at(s),
            outcome: verdict.into(),
            score: None,
            evidence: json!({"checks": [{"name": "latency", "verdict": {"outcome": verdict}}]}),
        }
    }

    #[test]
    fn weight_changes_and_the_start_of_each_failing_streak_are_moments() {
        let audit = [
            entry(30, "rolled-back", 50, 0),
            entry(20, "paused", 50, 50),
            entry(10, "approved", 10, 50),
        ];
        let marks = stage_changes(&audit);
        assert_eq!(marks.len(), 2, "{marks:?}");
        assert!(
            matches!(&marks[1], Mark::Moment { label, kind: MomentKind::Stage, .. }
            if label == "approved 10% → 50%")
        );
        let analyses = [
            analysis(40, "fail"),
            analysis(30, "fail"),
            analysis(20, "pass"),
            analysis(10, "fail"),
        ];
        let fails = failures("latency", &analyses);
        let times: Vec<f64> = fails
            .iter()
            .map(|m| match m {
                Mark::Moment { t, .. } => *t - 1_700_000_000.0,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(times, [10.0, 30.0]);
        assert!(failures("errors", &analyses).is_empty());
    }

    #[test]
    fn moments_in_the_span_are_drawn_and_labelled_and_others_left_out() {
        let points: Vec<(f64, f64)> = (0..30)
            .map(|i| (1_700_000_000.0 + f64::from(i), 0.1))
            .collect();
        let mut marks =
            stage_changes(&[entry(10, "approved", 10, 50), entry(-600, "started", 0, 10)]);
        // The failing analysis judged the window one second after its last point.
        marks.extend(failures("latency", &[analysis(30, "fail")]));
        let svg = chart::render(&Chart {
            title: "latency",
            unit: Unit::Seconds,
            baseline: &points,
            canary: &points,
            marks: &marks,
        })
        .into_string();
        assert_eq!(
            svg.matches("class=\"moment moment-stage\"").count(),
            1,
            "{svg}"
        );
        assert!(svg.contains("approved 10% → 50%"), "{svg}");
        assert_eq!(
            svg.matches("class=\"moment moment-fail\"").count(),
            1,
            "{svg}"
        );
        assert!(svg.contains("latency failed"));
        assert!(!svg.contains("started 0%"), "outside the span: {svg}");
        // Moments are labelled on the chart, not in the legend.
        assert!(
            !svg.contains("<g class=\"legend\"><line class=\"threshold\""),
            "{svg}"
        );
    }
}
