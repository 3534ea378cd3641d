//! The queries' answers read as the judge's input: a check's query must answer with one series
//! (its points are the side's values), an error-rate check's pair of queries with one errors and
//! one totals series (paired by timestamp into counts). Two readings live here and nowhere else.
//! An errors query that answers with no series while its totals query has points means no error
//! was counted in the window (client libraries create an error label set only on its first use),
//! so the side is read as 0 errors at each of the totals' steps, with a note saying so; with no
//! totals either, the side stays empty and the judge calls it no data. And a query that answers
//! with several series is refused ([`SeveralSeries`], naming the query and the label sets):
//! using one of them would judge an arbitrary pod, route or status code. Pure: answers in, data
//! out; no verdicts (the judge gives them) and no I/O.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::judge::{CountPoint, Point};
use crate::source::Series;

/// At most this many label sets are named in a [`SeveralSeries`] error.
const LABEL_SETS_NAMED: usize = 3;
/// At most this many characters of one label set are shown.
const LABEL_SET_CHARS: usize = 160;

/// A query answered with several series where a check needs one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "query `{query}` returned {count} series ({}); a check needs exactly one: aggregate the \
     query (for example `sum(...)`) or select one series with its labels",
    named(label_sets, *count)
)]
pub struct SeveralSeries {
    /// The query as it was sent.
    pub query: String,
    /// How many series it returned.
    pub count: usize,
    /// The first [`LABEL_SETS_NAMED`] label sets, written as PromQL writes them.
    pub label_sets: Vec<String>,
}

/// The label sets shown, and how many more there are.
fn named(sets: &[String], count: usize) -> String {
    let mut text = sets.join(", ");
    if count > sets.len() {
        let _ = write!(text, " and {} more", count - sets.len());
    }
    text
}

/// `{code="500", pod="a"}`, cut at [`LABEL_SET_CHARS`] characters.
fn label_set(labels: &BTreeMap<String, String>) -> String {
    let inner = labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut shown: String = inner.chars().take(LABEL_SET_CHARS).collect();
    if shown.len() < inner.len() {
        shown.push('…');
    }
    format!("{{{shown}}}")
}

/// The one series of `query`'s answer: `None` when it has none, an error when it has several.
fn one(query: &str, answer: Vec<Series>) -> Result<Option<Vec<Point>>, SeveralSeries> {
    if answer.len() > 1 {
        return Err(SeveralSeries {
            query: query.to_string(),
            count: answer.len(),
            label_sets: answer
                .iter()
                .take(LABEL_SETS_NAMED)
                .map(|s| label_set(&s.labels))
                .collect(),
        });
    }
    Ok(answer.into_iter().next().map(|s| s.points))
}

/// A side's values: the points of the query's one series (none when it answered no series).
pub(super) fn values(query: &str, answer: Vec<Series>) -> Result<Vec<Point>, SeveralSeries> {
    Ok(one(query, answer)?.unwrap_or_default())
}

/// A side's counts from its errors and totals answers, and a note when the errors were read as
/// zeros because their query returned no series while the totals had points. The note counts
/// the steps from `judged_from` (unix seconds) on: a staged check's judged points, not its
/// lookback before the stage.
pub(super) fn counts(
    (errors_query, errors): (&str, Vec<Series>),
    (total_query, totals): (&str, Vec<Series>),
    judged_from: f64,
) -> Result<(Vec<CountPoint>, Option<String>), SeveralSeries> {
    let errors = one(errors_query, errors)?;
    let totals = one(total_query, totals)?.unwrap_or_default();
    match errors {
        Some(errors) => Ok((pair_counts(&errors, &totals), None)),
        None if totals.is_empty() => Ok((Vec::new(), None)),
        None => {
            let judged = totals.iter().filter(|p| p.t >= judged_from);
            let requests: f64 = judged
                .clone()
                .map(|p| p.v)
                .filter(|v| v.is_finite() && *v >= 0.0)
                .sum();
            let note = format!(
                "errors query returned no series: 0 errors over {} requests ({} steps)",
                whole_or_one_decimal(requests),
                judged.count()
            );
            let zeros = totals
                .iter()
                .map(|t| CountPoint {
                    t: t.t,
                    errors: 0.0,
                    total: t.v,
                })
                .collect();
            Ok((zeros, Some(note)))
        }
    }
}

/// `4500` for a whole number, `4500.3` otherwise (`increase()` extrapolates).
fn whole_or_one_decimal(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Errors and totals paired by timestamp (points within half a second are the same instant).
fn pair_counts(errors: &[Point], totals: &[Point]) -> Vec<CountPoint> {
    totals
        .iter()
        .filter_map(|t| {
            errors
                .iter()
                .find(|e| (e.t - t.t).abs() < 0.5)
                .map(|e| CountPoint {
                    t: t.t,
                    errors: e.v,
                    total: t.v,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: f64, v: f64) -> Point {
        Point { t, v }
    }

    fn series(labels: &[(&str, &str)], points: Vec<Point>) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points,
        }
    }

    #[test]
    fn counts_pair_by_timestamp_and_drop_unpaired_points() {
        let paired = pair_counts(&[p(1.0, 1.0), p(2.0, 2.0)], &[p(2.1, 20.0), p(3.0, 30.0)]);
        assert_eq!(
            paired,
            vec![CountPoint {
                t: 2.1,
                errors: 2.0,
                total: 20.0
            }]
        );
    }

    /// Issue 18, point 4: the 5xx series does not exist (never created), the totals have
    /// 3 steps of requests: 0 errors at each of them, and a note saying so.
    #[test]
    fn an_errors_query_without_series_is_zero_errors_over_the_totals_steps() {
        let totals = vec![series(
            &[],
            vec![p(60.0, 1500.0), p(120.0, 1500.0), p(180.0, 1500.5)],
        )];
        let (points, note) =
            counts(("errors", vec![]), ("totals", totals), f64::NEG_INFINITY).unwrap();
        assert_eq!(
            points,
            vec![
                CountPoint {
                    t: 60.0,
                    errors: 0.0,
                    total: 1500.0
                },
                CountPoint {
                    t: 120.0,
                    errors: 0.0,
                    total: 1500.0
                },
                CountPoint {
                    t: 180.0,
                    errors: 0.0,
                    total: 1500.5
                },
            ]
        );
        assert_eq!(
            note.as_deref(),
            Some("errors query returned no series: 0 errors over 4500.5 requests (3 steps)")
        );
    }

    #[test]
    fn no_totals_is_no_data_whatever_the_errors_answer() {
        let errors = || vec![series(&[], vec![p(60.0, 3.0)])];
        let cases = [
            (vec![], vec![]),
            (errors(), vec![]),
            (vec![], vec![series(&[], vec![])]),
        ];
        for (errors, totals) in cases {
            let (points, note) = counts(("e", errors), ("t", totals), f64::NEG_INFINITY).unwrap();
            assert!(points.is_empty(), "{points:?}");
            assert_eq!(note, None);
        }
        // Both present: paired as they are, without a note.
        let (points, note) = counts(
            ("e", errors()),
            ("t", vec![series(&[], vec![p(60.0, 100.0)])]),
            f64::NEG_INFINITY,
        )
        .unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(note, None);
    }

    #[test]
    fn several_series_are_refused_naming_the_query_and_a_few_label_sets() {
        let two = vec![
            series(&[("code", "500"), ("pod", "a")], vec![p(1.0, 1.0)]),
            series(&[("code", "503"), ("pod", "a")], vec![p(1.0, 2.0)]),
        ];
        let e = values("sum by (code) (x)", two).unwrap_err();
        assert_eq!(e.count, 2);
        assert_eq!(
            e.to_string(),
            "query `sum by (code) (x)` returned 2 series ({code=\"500\", pod=\"a\"}, \
             {code=\"503\", pod=\"a\"}); a check needs exactly one: aggregate the query (for \
             example `sum(...)`) or select one series with its labels"
        );
        // Many series: the first three are named, the rest counted; long sets are cut.
        let long = "x".repeat(500);
        let many: Vec<Series> = (0..10)
            .map(|i| series(&[("pod", &format!("{i}{long}"))], vec![]))
            .collect();
        let e = values("q", many).unwrap_err();
        assert_eq!(e.label_sets.len(), 3);
        assert!(e.to_string().contains(" and 7 more)"), "{e}");
        assert!(e.label_sets[0].chars().count() < 170, "{}", e.label_sets[0]);
        // Either query of a pair is refused by its own text.
        let e = counts(
            ("errors{}", vec![series(&[], vec![]), series(&[], vec![])]),
            ("totals", vec![]),
            f64::NEG_INFINITY,
        )
        .unwrap_err();
        assert_eq!(e.query, "errors{}");
        let e = counts(
            ("errors", vec![]),
            ("totals{}", vec![series(&[], vec![]), series(&[], vec![])]),
            f64::NEG_INFINITY,
        )
        .unwrap_err();
        assert_eq!(e.query, "totals{}");
        // One series, or none, is read as it is.
        assert_eq!(values("q", vec![]).unwrap(), vec![]);
        assert_eq!(
            values("q", vec![series(&[], vec![p(1.0, 2.0)])]).unwrap(),
            vec![p(1.0, 2.0)]
        );
    }
}
