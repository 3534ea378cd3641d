//! `canaryd_check_verdicts_total{rollout, check, verdict}` held compactly: one entry per rollout,
//! its checks' counts in a sorted vector, instead of one registry series (a map entry keyed by a
//! vector of owned label strings, about 300 bytes) per rollout, check and verdict. At 10,000
//! rollouts of 10 checks those series alone took about 35 MB (BENCHMARKS.md, "Kept answers":
//! the memory bisected). It renders the same lines in the same order as the registry did.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The family's name.
pub(super) const NAME: &str = "canaryd_check_verdicts_total";
/// The verdicts counted, in the order their lines are written.
const VERDICTS: [&str; 3] = ["fail", "inconclusive", "pass"];

/// Each rollout's checks' verdict counts.
#[derive(Debug, Default)]
pub(super) struct Verdicts(BTreeMap<Box<str>, Vec<Counts>>);

/// One check's counts, and which verdicts it has had (a series exists once counted).
#[derive(Debug)]
struct Counts {
    check: Box<str>,
    seen: u8,
    counts: [f64; VERDICTS.len()],
}

impl Verdicts {
    /// Adds one; `false` (nothing counted) for a verdict not in [`VERDICTS`].
    pub(super) fn inc(&mut self, rollout: &str, check: &str, verdict: &str) -> bool {
        let Some(v) = VERDICTS.iter().position(|known| *known == verdict) else {
            return false;
        };
        if !self.0.contains_key(rollout) {
            self.0.insert(rollout.into(), Vec::new());
        }
        let Some(checks) = self.0.get_mut(rollout) else {
            return false;
        };
        let at = match checks.binary_search_by(|c| (*c.check).cmp(check)) {
            Ok(at) => at,
            Err(at) => {
                let counts = Counts {
                    check: check.into(),
                    seen: 0,
                    counts: [0.0; VERDICTS.len()],
                };
                checks.insert(at, counts);
                at
            }
        };
        checks[at].seen |= 1 << v;
        checks[at].counts[v] += 1.0;
        true
    }

    /// The count of one series, `None` when it was never counted here.
    pub(super) fn get(&self, rollout: &str, check: &str, verdict: &str) -> Option<f64> {
        let v = VERDICTS.iter().position(|known| *known == verdict)?;
        let checks = self.0.get(rollout)?;
        let c = &checks[checks.binary_search_by(|c| (*c.check).cmp(check)).ok()?];
        (c.seen & (1 << v) != 0).then_some(c.counts[v])
    }

    /// Keeps the rollouts and checks `checks(rollout)` still names (`None`: the rollout is gone).
    pub(super) fn retain(&mut self, checks: impl Fn(&str) -> Option<Vec<String>>) {
        self.0.retain(|rollout, counts| match checks(rollout) {
            None => false,
            Some(names) => {
                counts.retain(|c| names.iter().any(|n| **n == *c.check));
                true
            }
        });
    }

    /// Writes the lines of whole rollouts after `after` until at least `max` lines are written;
    /// returns the lines written and, when it stopped before the end, the last rollout written.
    pub(super) fn render(
        &self,
        out: &mut String,
        after: Option<&str>,
        max: usize,
    ) -> (usize, Option<String>) {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut lines = 0;
        let mut last: Option<&str> = None;
        for (rollout, checks) in self.0.range::<str, _>((from, Bound::Unbounded)) {
            if lines >= max {
                return (lines, last.map(str::to_string));
            }
            for c in checks {
                for (v, verdict) in VERDICTS.iter().enumerate() {
                    if c.seen & (1 << v) == 0 {
                        continue;
                    }
                    let set = [
                        ("rollout", rollout.to_string()),
                        ("check", c.check.to_string()),
                        ("verdict", (*verdict).to_string()),
                    ];
                    let value = super::number(c.counts[v]);
                    let _ = writeln!(out, "{NAME}{} {value}", super::render_labels(&set));
                    lines += 1;
                }
            }
            last = Some(rollout);
        }
        (lines, None)
    }
}
