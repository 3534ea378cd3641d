//! `canaryd_check_verdicts_total{rollout, check, verdict}` held compactly: one entry per rollout,
//! its checks' counts in a sorted vector of exactly its checks (32 bytes each: the check's name
//! shared by every rollout that has a check of that name, three 32-bit counts), instead of one
//! registry series (a map entry keyed by a vector of owned label strings, about 300 bytes) per
//! rollout, check and verdict. At 10,000 rollouts of 10 checks those series alone took about
//! 35 MB (BENCHMARKS.md, "Kept answers": the memory bisected), and a first compact form with a
//! name per rollout and 64-bit counts 11 MB. It renders the same lines in the same order as the
//! registry did.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

/// The family's name.
pub(super) const NAME: &str = "canaryd_check_verdicts_total";
/// The verdicts counted, in the order their lines are written.
const VERDICTS: [&str; 3] = ["fail", "inconclusive", "pass"];

/// Each rollout's checks' verdict counts, and the check names they share.
#[derive(Debug, Default)]
pub(super) struct Verdicts {
    rollouts: BTreeMap<Box<str>, Vec<Counts>>,
    names: BTreeSet<Arc<str>>,
}

/// One check's counts, and which verdicts it has had (a series exists once counted). A count
/// stops at `u32::MAX`: four billion analyses, 1,300 years at one every ten seconds.
#[derive(Debug)]
struct Counts {
    check: Arc<str>,
    counts: [u32; VERDICTS.len()],
    seen: u8,
}

impl Verdicts {
    /// Adds one; `false` (nothing counted) for a verdict not in [`VERDICTS`].
    pub(super) fn inc(&mut self, rollout: &str, check: &str, verdict: &str) -> bool {
        let Some(v) = VERDICTS.iter().position(|known| *known == verdict) else {
            return false;
        };
        if !self.rollouts.contains_key(rollout) {
            self.rollouts.insert(rollout.into(), Vec::new());
        }
        let Some(checks) = self.rollouts.get_mut(rollout) else {
            return false;
        };
        let at = match checks.binary_search_by(|c| (*c.check).cmp(check)) {
            Ok(at) => at,
            Err(at) => {
                let name = match self.names.get(check) {
                    Some(name) => Arc::clone(name),
                    None => {
                        let name: Arc<str> = check.into();
                        self.names.insert(Arc::clone(&name));
                        name
                    }
                };
                let counts = Counts {
                    check: name,
                    counts: [0; VERDICTS.len()],
                    seen: 0,
                };
                checks.reserve_exact(1);
                checks.insert(at, counts);
                at
            }
        };
        checks[at].seen |= 1 << v;
        checks[at].counts[v] = checks[at].counts[v].saturating_add(1);
        true
    }

    /// The count of one series, `None` when it was never counted here.
    pub(super) fn get(&self, rollout: &str, check: &str, verdict: &str) -> Option<f64> {
        let v = VERDICTS.iter().position(|known| *known == verdict)?;
        let checks = self.rollouts.get(rollout)?;
        let c = &checks[checks.binary_search_by(|c| (*c.check).cmp(check)).ok()?];
        (c.seen & (1 << v) != 0).then_some(f64::from(c.counts[v]))
    }

    /// Keeps the rollouts and checks `checks(rollout)` still names (`None`: the rollout is gone).
    pub(super) fn retain(&mut self, checks: impl Fn(&str) -> Option<Vec<String>>) {
        self.rollouts
            .retain(|rollout, counts| match checks(rollout) {
                None => false,
                Some(names) => {
                    counts.retain(|c| names.iter().any(|n| **n == *c.check));
                    counts.shrink_to_fit();
                    true
                }
            });
        // A name no rollout counts any more is forgotten.
        self.names.retain(|name| Arc::strong_count(name) > 1);
    }

    /// Writes the lines of whole rollouts after `after` until at least `max` lines are written;
    /// returns the lines written and, when it stopped before the end, the last rollout written.
    pub(super) fn render(
        &self,
        out: &mut String,
        after: Option<&str>,
        max: usize,
    ) -> (usize, Option<String>) {
        super::page_rollouts(&self.rollouts, out, after, max, |out, rollout, checks| {
            let mut lines = 0;
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
                    let value = c.counts[v];
                    let _ = writeln!(out, "{NAME}{} {value}", super::render_labels(&set));
                    lines += 1;
                }
            }
            lines
        })
    }
}
