//! The series whose first label is `rollout` (analyses, inconclusive streaks, backend errors and
//! the like: a few per rollout), held per rollout: the rollout's name once, and its series in a
//! sorted vector of (family, the other labels, value). The registry's general form, a map entry
//! keyed by the family and a vector of owned label strings, cost about 300 bytes a series, and
//! these families have tens of thousands at 10,000 rollouts (BENCHMARKS.md, "Memory at 10,000
//! rollouts"). Each family renders its lines in the registry's order: by rollout, then by the
//! other labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One series of a rollout.
#[derive(Debug)]
struct Series {
    family: &'static str,
    /// The labels after `rollout`, in the order given.
    rest: Box<[(&'static str, Box<str>)]>,
    value: f64,
}

impl Series {
    fn key(&self) -> (&'static str, impl Iterator<Item = (&'static str, &str)>) {
        (self.family, self.rest.iter().map(|(k, v)| (*k, &**v)))
    }
}

/// Every rollout's series.
#[derive(Debug, Default)]
pub(super) struct PerRollout(BTreeMap<Box<str>, Vec<Series>>);

/// Where `(family, rest)` is, or would be inserted, among a rollout's sorted series.
fn find(
    series: &[Series],
    family: &'static str,
    rest: &[(&'static str, &str)],
) -> Result<usize, usize> {
    series.binary_search_by(|s| {
        let (f, labels) = s.key();
        f.cmp(family).then_with(|| labels.cmp(rest.iter().copied()))
    })
}

impl PerRollout {
    /// The value of `family{rollout, rest}`, created at 0.
    pub(super) fn entry(
        &mut self,
        family: &'static str,
        rollout: &str,
        rest: &[(&'static str, &str)],
    ) -> &mut f64 {
        if !self.0.contains_key(rollout) {
            self.0.insert(rollout.into(), Vec::new());
        }
        let series = self.0.get_mut(rollout).expect("inserted above");
        let at = match find(series, family, rest) {
            Ok(at) => at,
            Err(at) => {
                let rest = rest.iter().map(|(k, v)| (*k, (*v).into())).collect();
                let new = Series {
                    family,
                    rest,
                    value: 0.0,
                };
                series.insert(at, new);
                at
            }
        };
        &mut series[at].value
    }

    /// The value of a series, `None` when it does not exist.
    pub(super) fn get(
        &self,
        family: &'static str,
        rollout: &str,
        rest: &[(&'static str, &str)],
    ) -> Option<f64> {
        let series = self.0.get(rollout)?;
        Some(series[find(series, family, rest).ok()?].value)
    }

    /// Drops a series.
    pub(super) fn remove(
        &mut self,
        family: &'static str,
        rollout: &str,
        rest: &[(&'static str, &str)],
    ) {
        let Some(series) = self.0.get_mut(rollout) else {
            return;
        };
        if let Ok(at) = find(series, family, rest) {
            series.remove(at);
        }
        if series.is_empty() {
            self.0.remove(rollout);
        }
    }

    /// Keeps the rollouts `checks(rollout)` still names (`None`: the rollout is gone), and of
    /// their series with a `check` label those of the checks it names.
    pub(super) fn retain(&mut self, checks: impl Fn(&str) -> Option<Vec<String>>) {
        self.0.retain(|rollout, series| match checks(rollout) {
            None => false,
            Some(names) => {
                series.retain(|s| {
                    s.rest
                        .iter()
                        .find(|(k, _)| *k == "check")
                        .is_none_or(|(_, check)| names.iter().any(|n| **n == **check))
                });
                !series.is_empty()
            }
        });
    }

    /// Writes `family`'s lines of whole rollouts after `after` until at least `max` lines are
    /// written; returns the lines written and, when it stopped before the end, the last rollout
    /// written.
    pub(super) fn render(
        &self,
        out: &mut String,
        family: &'static str,
        after: Option<&str>,
        max: usize,
    ) -> (usize, Option<String>) {
        let mut labels: Vec<(&'static str, String)> = Vec::new();
        super::page_rollouts(&self.0, out, after, max, |out, rollout, series| {
            let start = series.partition_point(|s| s.family < family);
            let mut lines = 0;
            for s in series[start..].iter().take_while(|s| s.family == family) {
                labels.clear();
                labels.push(("rollout", rollout.to_string()));
                labels.extend(s.rest.iter().map(|(k, v)| (*k, v.to_string())));
                let value = super::number(s.value);
                let _ = writeln!(out, "{family}{} {value}", super::render_labels(&labels));
                lines += 1;
            }
            lines
        })
    }
}
