//! Answers kept between the analyses of a stage (issue 19 point 1: the backend is asked only for
//! what is new). A staged check is judged on its whole stage at every analysis; instead of asking
//! the backend for all of it again, the analysis resumes each staged query from the answer the
//! previous one kept: it asks from [`OVERLAP`] (at least [`OVERLAP_STEPS`] steps) before the newest
//! kept point, on the stage's grid of steps so that the backend evaluates the same instants as
//! before, and replaces the kept points from there on with the fresh answer; the result is kept
//! again once a quarter of it is newer than what was kept ([`stale`]). A stage younger than the
//! overlap is asked whole and keeps nothing ([`worth_keeping`]). Re-asking the newest points takes
//! in late samples, which change the last points of a rate. An answer is kept for its query's text,
//! its step and the stage's start: a new stage, an edited query, another canary version or step
//! asks for everything again. It owns that rule and the bytes the store keeps (`store::kept`); it
//! is pure.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::judge::Point;
use crate::source::Series;
use crate::store::KeptAnswer;

/// How far before the newest kept point an analysis asks again.
pub const OVERLAP: Duration = Duration::from_secs(120);
/// The fewest steps an analysis asks again.
pub const OVERLAP_STEPS: u32 = 3;
/// Points closer than this (seconds) are at the same instant.
const SAME_INSTANT: f64 = 1e-3;
/// The encoding's first bytes, with its version.
const MAGIC: &[u8; 4] = b"cka1";

/// One staged query's answer so far in its stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// The query's text as sent (sides and step filled in).
    pub query: String,
    pub step: Duration,
    /// The start of the stage's evidence it was read from (`EvidenceSpan::Stage`'s `from`).
    pub from: DateTime<Utc>,
    pub series: Vec<Series>,
}

/// A kept answer the store returned that cannot be read; the analysis asks for everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the answer kept for `{query}` cannot be read ({what}); asking for the whole stage")]
pub struct KeptError {
    pub query: String,
    pub what: &'static str,
}

impl Kept {
    /// The time of its newest point (unix seconds), if it has any.
    fn newest(&self) -> Option<f64> {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.t))
            .filter(|t| t.is_finite())
            .reduce(f64::max)
    }

    /// The record the store keeps.
    pub fn to_record(&self) -> KeptAnswer {
        let mut data = Vec::with_capacity(16 + self.series.iter().map(size).sum::<usize>());
        data.extend_from_slice(MAGIC);
        put_len(&mut data, self.series.len());
        for series in &self.series {
            put_len(&mut data, series.labels.len());
            for (name, value) in &series.labels {
                put_len(&mut data, name.len());
                data.extend_from_slice(name.as_bytes());
                put_len(&mut data, value.len());
                data.extend_from_slice(value.as_bytes());
            }
            put_len(&mut data, series.points.len());
            for p in &series.points {
                data.extend_from_slice(&p.t.to_le_bytes());
                data.extend_from_slice(&p.v.to_le_bytes());
            }
        }
        KeptAnswer {
            query: self.query.clone(),
            step_ms: i64::try_from(self.step.as_millis()).unwrap_or(i64::MAX),
            from_ms: self.from.timestamp_millis(),
            data,
        }
    }

    /// Reads a record back; a record this build did not write, or one cut short, is an error,
    /// never a panic or an allocation larger than the record.
    pub fn from_record(record: &KeptAnswer) -> Result<Kept, KeptError> {
        let fail = |what| KeptError {
            query: record.query.clone(),
            what,
        };
        let step = u64::try_from(record.step_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| fail("its step is not positive"))?;
        let from = DateTime::from_timestamp_millis(record.from_ms)
            .ok_or_else(|| fail("its stage's start is not a time"))?;
        let mut r = Reader(&record.data);
        if r.take(MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(fail("not written by this version"));
        }
        let cut = || fail("it is cut short");
        let count = r.len(4).ok_or_else(cut)?;
        let mut series = Vec::with_capacity(count);
        for _ in 0..count {
            let labels_count = r.len(8).ok_or_else(cut)?;
            let mut labels = BTreeMap::new();
            for _ in 0..labels_count {
                let name = r.text().ok_or_else(|| fail("a label is not UTF-8"))?;
                let value = r.text().ok_or_else(|| fail("a label is not UTF-8"))?;
                labels.insert(name, value);
            }
            let points_count = r.len(16).ok_or_else(cut)?;
            let mut points = Vec::with_capacity(points_count);
            for _ in 0..points_count {
                let t = r.f64().ok_or_else(cut)?;
                let v = r.f64().ok_or_else(cut)?;
                points.push(Point { t, v });
            }
            series.push(Series { labels, points });
        }
        if !r.0.is_empty() {
            return Err(fail("it has bytes after its last series"));
        }
        Ok(Kept {
            query: record.query.clone(),
            step,
            from,
            series,
        })
    }
}

fn size(series: &Series) -> usize {
    let labels: usize = series
        .labels
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum();
    8 + labels + 16 * series.points.len()
}

fn put_len(data: &mut Vec<u8>, n: usize) {
    data.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// Reads an encoded answer from the front.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// A count of items that take at least `each` bytes: never more than the bytes left hold.
    fn len(&mut self, each: usize) -> Option<usize> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        (n <= self.0.len() / each.max(1)).then_some(n)
    }

    fn text(&mut self) -> Option<String> {
        let n = self.len(1)?;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Where a staged query resumes at `now` from the answer `found` kept for it ([`find`]): `start`
/// is where it would start without one (the stage's evidence start, or the latest
/// [`super::MAX_POINTS`] steps of a long stage), `from` the stage's evidence start. `None` when
/// resuming would ask for no less than the whole stage: ask from `start`.
pub fn resume(
    found: &Kept,
    step: Duration,
    from: DateTime<Utc>,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let ms = |d: Duration| i64::try_from(d.as_millis()).ok();
    let newest = found.newest()?;
    let step_ms = ms(step).filter(|s| *s > 0)?;
    let overlap_ms = ms(overlap(step))?;
    let back = (newest * 1000.0).floor() as i64 - overlap_ms;
    // On the stage's grid: the same instants the kept points were evaluated at.
    let steps = (back - from.timestamp_millis()).div_euclid(step_ms);
    let resume = from + chrono::Duration::milliseconds(steps.checked_mul(step_ms)?);
    (resume > start && resume < now).then_some(resume)
}

/// How far back a resumed query at `step` asks before the newest kept point.
fn overlap(step: Duration) -> Duration {
    OVERLAP.max(step * OVERLAP_STEPS)
}

/// Whether an answer at `step` of the stage whose evidence starts at `from` is worth keeping at
/// `now`: once the stage is older than the overlap and a step, so that the next analysis can
/// resume from it. A younger stage is asked whole, and nothing is read or written for it.
pub fn worth_keeping(step: Duration, from: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let age = (now - from).to_std().unwrap_or_default();
    age >= overlap(step) + step
}

/// The answer kept for `query` at `step` in the stage whose evidence starts at `from`.
pub fn find<'a>(
    kept: &'a [Kept],
    query: &str,
    step: Duration,
    from: DateTime<Utc>,
) -> Option<&'a Kept> {
    // The store keeps milliseconds.
    kept.iter().find(|k| {
        k.query == query
            && k.step.as_millis() == step.as_millis()
            && k.from.timestamp_millis() == from.timestamp_millis()
    })
}

/// Whether the answer kept before (`prior`, `None`: nothing usable was kept) is worth replacing
/// with `merged`, what the analysis now read: when a quarter or more of its stage's points (not
/// counting the lookback before the stage) are newer than the kept ones. A kept answer that is a
/// little behind costs only a longer resumed query (from its newest point on); rewriting it at
/// every analysis would write the whole stage each time. So a stage of `n` points is written
/// about `4 ln n` times, and a resumed query asks for at most about a quarter of the stage plus
/// the overlap.
pub fn stale(prior: Option<&Kept>, merged: &[Series]) -> bool {
    let Some((newest, from)) = prior.and_then(|k| Some((k.newest()?, k.from))) else {
        return true;
    };
    let from = from.timestamp_millis() as f64 / 1000.0;
    let points = merged
        .iter()
        .flat_map(|s| &s.points)
        .filter(|p| p.t >= from);
    let (total, newer) = points.fold((0usize, 0usize), |(total, newer), p| {
        (total + 1, newer + usize::from(p.t > newest + SAME_INSTANT))
    });
    newer * 4 >= total.max(1)
}

/// The answer of a query resumed at `resume`: `kept`'s points from `start` up to `resume`, then
/// the `fresh` answer's from `resume` on, series matched by their labels. A series the fresh
/// answer lacks keeps its older points, as a whole re-read would return them.
pub fn merge(
    kept: &Kept,
    fresh: Vec<Series>,
    resume: DateTime<Utc>,
    start: DateTime<Utc>,
) -> Vec<Series> {
    let secs = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
    let (resume, start) = (secs(resume), secs(start));
    let mut merged: Vec<Series> = kept
        .series
        .iter()
        .map(|s| Series {
            labels: s.labels.clone(),
            points: s
                .points
                .iter()
                .filter(|p| p.t > start - SAME_INSTANT && p.t < resume - SAME_INSTANT)
                .copied()
                .collect(),
        })
        .collect();
    for series in fresh {
        let new = series
            .points
            .into_iter()
            .filter(|p| p.t > resume - SAME_INSTANT);
        match merged.iter_mut().find(|m| m.labels == series.labels) {
            Some(m) => m.points.extend(new),
            None => merged.push(Series {
                labels: series.labels,
                points: new.collect(),
            }),
        }
    }
    merged.retain(|s| !s.points.is_empty());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).unwrap()
    }

    fn series(pod: &str, points: &[(f64, f64)]) -> Series {
        Series {
            labels: BTreeMap::from([("pod".to_string(), pod.to_string())]),
            points: points.iter().map(|&(t, v)| Point { t, v }).collect(),
        }
    }

    fn kept(points: &[(f64, f64)]) -> Kept {
        Kept {
            query: "q".into(),
            step: Duration::from_secs(60),
            from: at(1_000),
            series: vec![series("a", points)],
        }
    }

    #[test]
    fn a_kept_answer_reads_back_as_written_nan_and_infinities_included() {
        let mut k = kept(&[
            (1_000.0, 1.5),
            (1_060.0, f64::NAN),
            (1_120.0, f64::INFINITY),
        ]);
        k.series.push(series("b", &[]));
        let back = Kept::from_record(&k.to_record()).unwrap();
        assert_eq!(back.series.len(), 2);
        assert_eq!(back.series[0].labels, k.series[0].labels);
        assert_eq!(back.series[0].points[0], k.series[0].points[0]);
        assert!(back.series[0].points[1].v.is_nan());
        assert_eq!(back.series[0].points[2].v, f64::INFINITY);
        assert_eq!((back.step, back.from), (k.step, k.from));
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_the_query_never_a_panic() {
        let good = kept(&[(1_000.0, 1.0), (1_060.0, 2.0)]).to_record();
        for cut in 0..good.data.len() {
            let mut bad = good.clone();
            bad.data.truncate(cut);
            let err = Kept::from_record(&bad).unwrap_err();
            assert_eq!(err.query, "q");
        }
        let mut huge = good.clone();
        huge.data[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Kept::from_record(&huge).is_err());
        let mut trailing = good.clone();
        trailing.data.push(0);
        assert!(Kept::from_record(&trailing).is_err());
        let mut stepless = good;
        stepless.step_ms = 0;
        assert!(Kept::from_record(&stepless).is_err());
    }

    #[test]
    fn a_query_resumes_on_the_stage_grid_a_few_steps_before_its_newest_point() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (1_000.0 + 60.0 * i as f64, 1.0)).collect();
        let k = vec![kept(&points)];
        let step = Duration::from_secs(60);
        let found = find(&k, "q", step, at(1_000)).unwrap();
        // Newest point 1,540; three steps (180 s, more than 120 s) back: 1,360.
        let resumed = resume(found, step, at(1_000), at(1_000), at(1_600));
        assert_eq!(resumed, Some(at(1_360)));
        // Another query, step or stage: nothing kept for it.
        assert!(find(&k, "other", step, at(1_000)).is_none());
        assert!(find(&k, "q", Duration::from_secs(10), at(1_000)).is_none());
        assert!(find(&k, "q", step, at(1_060)).is_none());
        // Nothing to save: the overlap reaches back to the start.
        let short = kept(&points[..3]);
        assert!(resume(&short, step, at(1_000), at(1_000), at(1_600)).is_none());
    }

    #[test]
    fn a_stage_younger_than_the_overlap_keeps_nothing() {
        let (minute, ten) = (Duration::from_secs(60), Duration::from_secs(10));
        assert!(!worth_keeping(minute, at(0), at(239)));
        assert!(worth_keeping(minute, at(0), at(240)), "three steps and one");
        assert!(!worth_keeping(ten, at(0), at(129)));
        assert!(worth_keeping(ten, at(0), at(130)), "two minutes and a step");
    }

    #[test]
    fn a_kept_answer_is_rewritten_once_a_quarter_of_the_stage_is_newer() {
        let points: Vec<(f64, f64)> = (0..12).map(|i| (1_000.0 + 60.0 * i as f64, 1.0)).collect();
        let prior = kept(&points[..9]);
        assert!(
            !stale(Some(&prior), &kept(&points[..11]).series),
            "2 of 11 new"
        );
        assert!(stale(Some(&prior), &kept(&points).series), "3 of 12 new");
        assert!(stale(None, &kept(&points).series));
        assert!(stale(Some(&kept(&[])), &[]));
    }

    #[test]
    fn a_resumed_answer_is_the_kept_points_then_the_fresh_ones() {
        let k = kept(&[
            (1_000.0, 1.0),
            (1_060.0, 2.0),
            (1_120.0, 3.0),
            (1_180.0, 4.0),
        ]);
        // The backend now says 30 at 1,120 (a late sample), and has two new points and a new pod.
        let fresh = vec![
            series("a", &[(1_120.0, 30.0), (1_180.0, 4.0), (1_240.0, 5.0)]),
            series("b", &[(1_240.0, 9.0)]),
        ];
        let merged = merge(&k, fresh, at(1_120), at(1_060));
        let values: Vec<f64> = merged[0].points.iter().map(|p| p.v).collect();
        assert_eq!(
            values,
            [2.0, 30.0, 4.0, 5.0],
            "from the start on, late sample taken"
        );
        assert_eq!(merged[1].points, [Point { t: 1_240.0, v: 9.0 }]);
        // A pod that answered nothing new keeps what it had.
        let quiet = merge(&k, Vec::new(), at(1_120), at(1_000));
        assert_eq!(quiet[0].points.len(), 2);
    }
}
