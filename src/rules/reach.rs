//! What a valid rule's checks can ever decide: the refusals `canaryd check` adds to validation's
//! for checks whose verdicts could never mean what they say (issue 18 point 3).
//!
//! It owns two rules. A check whose test cannot reach significance at its `min_samples` (at the
//! smallest level Holm's correction gives it in the rule's family of tested checks) can never
//! fail, so it is refused with the smallest `min_samples` that can: a trend's Mann-Kendall test
//! (its smallest p-value, all points in order, is `Φ(-√(9n(n−1)/(4n+10)))`) and a
//! statistical quantile's binomial test (all points beyond the threshold: `(1−q)^n` above,
//! `q^n` below). The relative check and a statistical mean use Student's t, which reaches any
//! level at any number of points, so nothing is refused for them. And a gating check whose
//! limit is 0 (a relative `tolerance = 0`, a trend's `max_slope_per_minute = 0`, a statistical
//! absolute check with `direction = "either"`) can never be *shown* within it by a healthy
//! canary: a pass needs the confidence bound on the worsening within the limit, and noise puts
//! the bound above 0. Such a check would hold every rollout, so it is refused with a hint;
//! `dry_run = true` (verdicts recorded, never acted on) keeps it. Pure: it reads the validated
//! rule and the raw shapes for positions, and returns problems.

use std::ops::Range;

use statrs::distribution::{ContinuousCDF, Normal};

use crate::judge::{Aggregate, CheckKind, CheckSpec, Direction, ThresholdTest};

use super::model::RolloutRule;
use super::problem::{Problem, SourceText};
use super::raw::{RawCheck, RawRule};

/// The most points the search for a usable `min_samples` looks at (p999 below a threshold needs
/// about 5,300 at 0.99).
const SEARCH_UP_TO: usize = 100_000;

/// The significance level of a check alone: (1 − confidence)/2 for a directional check, 1 −
/// confidence for `either` (as the judge's).
fn level(spec: &CheckSpec) -> f64 {
    match spec.direction {
        Direction::Either => 1.0 - spec.confidence,
        _ => (1.0 - spec.confidence) / 2.0,
    }
}

/// Whether a check produces a p-value (and so belongs to Holm's family).
fn tested(kind: &CheckKind) -> bool {
    match kind {
        CheckKind::Relative { .. } | CheckKind::ErrorRate { .. } | CheckKind::Trend { .. } => true,
        CheckKind::Absolute { test, .. } | CheckKind::ErrorRateAbsolute { test, .. } => {
            *test == ThresholdTest::Statistical
        }
    }
}

/// The smallest p-value the check's test can give at `n` points, for the tests that have one
/// above 0.
fn smallest_p(spec: &CheckSpec, n: usize) -> Option<f64> {
    let nf = n as f64;
    let two = |p: f64| match spec.direction {
        Direction::Either => (2.0 * p).min(1.0),
        _ => p,
    };
    match spec.kind {
        CheckKind::Trend { .. } => {
            if n < 3 {
                return Some(1.0);
            }
            let z = (9.0 * nf * (nf - 1.0) / (4.0 * nf + 10.0)).sqrt();
            Some(two(Normal::standard().sf(z)))
        }
        CheckKind::Absolute {
            aggregate,
            test: ThresholdTest::Statistical,
            ..
        } => {
            let q = match aggregate {
                Aggregate::Median => 0.5,
                Aggregate::Quantile(q) if q > 0.0 && q < 1.0 => q,
                _ => return None,
            };
            Some(match spec.direction {
                Direction::HigherIsWorse => (1.0 - q).powf(nf),
                Direction::LowerIsWorse => q.powf(nf),
                Direction::Either => (2.0 * (1.0 - q).powf(nf).min(q.powf(nf))).min(1.0),
            })
        }
        _ => None,
    }
}

/// Where one key of a `[[checks]]` entry is, if it is written there.
type KeySpan = fn(&RawCheck) -> Option<Range<usize>>;

/// The span of check `name`'s `[[checks]]` entry, or of one of its keys when given.
fn span_of(raw: &RawRule, name: &str, key: KeySpan) -> Option<Range<usize>> {
    let entry = raw
        .checks
        .iter()
        .find(|r| r.get_ref().name.as_ref().map(|n| n.get_ref().as_str()) == Some(name))?;
    key(entry.get_ref()).or_else(|| Some(entry.span()))
}

/// Every refusal of a rule that passed validation.
pub fn refusals(raw: &RawRule, rule: &RolloutRule, src: &SourceText<'_>) -> Vec<Problem> {
    let mut found = Vec::new();
    // Holm's smallest threshold for a check: its level times the family's largest level over
    // the sum of the family's levels (weighted Holm, as the judge's `family`).
    let levels: Vec<f64> = rule
        .checks
        .iter()
        .filter(|c| tested(&c.spec.kind))
        .map(|c| level(&c.spec))
        .collect();
    let (largest, sum) = (
        levels.iter().copied().fold(0.0, f64::max),
        levels.iter().sum::<f64>(),
    );
    for (i, c) in rule.checks.iter().enumerate() {
        let spec = &c.spec;
        let dry_run = rule.plan.triggers.get(i).is_some_and(|t| t.dry_run);
        if !dry_run && let Some(problem) = zero_limit(raw, spec, src) {
            found.push(problem);
        }
        let smallest = if rule.scoring.family_wise && levels.len() > 1 {
            level(spec) * largest / sum.max(largest)
        } else {
            level(spec)
        };
        let n = spec.min_samples.max(3);
        let Some(p) = smallest_p(spec, n) else {
            continue;
        };
        if p < smallest {
            continue;
        }
        let usable =
            (n..=SEARCH_UP_TO).find(|&m| smallest_p(spec, m).is_some_and(|p| p < smallest));
        let family = if levels.len() > 1 && rule.scoring.family_wise {
            format!(
                " (its share after Holm's correction over the rule's {} tested checks)",
                levels.len()
            )
        } else {
            String::new()
        };
        let test = match spec.kind {
            CheckKind::Trend { .. } => "Mann-Kendall trend test",
            _ => "binomial quantile test",
        };
        let hint = match usable {
            Some(m) => format!("set min_samples = {m} or more (the fewest points at which it can)"),
            None => format!(
                "no min_samples up to {SEARCH_UP_TO} can: lower the confidence or change the aggregate"
            ),
        };
        found.push(src.problem(
            span_of(raw, &spec.name, |r| r.min_samples.as_ref().map(|s| s.span())),
            format!(
                "`{}` can never fail: at min_samples = {} its {test} cannot reach p < {}{family}; its smallest p-value there is {}",
                spec.name,
                spec.min_samples,
                short(smallest),
                short(p)
            ),
            Some(hint),
        ));
    }
    found
}

/// A gating check whose limit is 0, which no healthy canary can be shown within.
fn zero_limit(raw: &RawRule, spec: &CheckSpec, src: &SourceText<'_>) -> Option<Problem> {
    let (key, what, hint): (KeySpan, String, &str) = match spec.kind {
        CheckKind::Relative { tolerance: 0.0 } => (
            |r| r.tolerance.as_ref().map(|s| s.span()),
            "tolerance = 0".into(),
            "set the largest worsening you accept (tolerance = 0.05 is 5% worse than the baseline), or dry_run = true to record verdicts only",
        ),
        CheckKind::Trend {
            max_slope_per_minute: 0.0,
        } => (
            |r| r.max_slope_per_minute.as_ref().map(|s| s.span()),
            "max_slope_per_minute = 0".into(),
            "set the largest slope you accept per minute, or dry_run = true to record verdicts only",
        ),
        CheckKind::Absolute {
            test: ThresholdTest::Statistical,
            ..
        } if spec.direction == Direction::Either => (
            |r| r.direction.as_ref().map(|s| s.span()),
            "direction = \"either\" with test = \"statistical\"".into(),
            "use direction = \"higher-is-worse\" or \"lower-is-worse\", or drop test = \"statistical\" to compare the observed value",
        ),
        _ => return None,
    };
    Some(src.problem(
        span_of(raw, &spec.name, key),
        format!(
            "`{}` has {what}: a pass must show the canary within its limit, and no healthy canary's noise can be shown within 0, so it would hold every rollout",
            spec.name
        ),
        Some(hint.into()),
    ))
}

/// A small probability for a sentence: 0.005, 0.0025, 1.2e-5.
fn short(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        let s = format!("{p:.5}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A rule with the given `[[checks]]` entries.
    fn rule(checks: &str) -> String {
        format!(
            "[rollout]\nname = \"r\"\nteam = \"t\"\nsource = \"s\"\nactuator = \"a\"\n\
             [analysis]\nevery = \"1m\"\n[sides]\nbaseline = \"v1\"\ncanary = \"v2\"\n\
             [[stages]]\nname = \"s10\"\nweight = 10\n{checks}"
        )
    }

    fn check(name: &str, body: &str) -> String {
        format!(
            "[[checks]]\nname = \"{name}\"\n{body}query = 'q{{v=\"{{{{side}}}}\"}}'\n\
             window = \"30m\"\n"
        )
    }

    fn problems(text: &str) -> Vec<String> {
        let known = crate::rules::KnownNames::any();
        match crate::rules::parse_rule(Path::new("r.toml"), text, &known) {
            Ok(_) => Vec::new(),
            Err(found) => found.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_gating_check_with_a_zero_limit_is_refused_at_its_key() {
        let relative = check("p99", "kind = \"relative\"\ntolerance = 0\n");
        let found = problems(&rule(&relative));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("r.toml:17:13: error: `p99` has tolerance = 0"),
            "{found:?}"
        );
        assert!(found[0].contains("tolerance = 0.05"), "{found:?}");
        let trend = check("memory", "kind = \"trend\"\nmax_slope_per_minute = 0.0\n");
        let found = problems(&rule(&trend));
        assert!(
            found[0].contains("`memory` has max_slope_per_minute = 0"),
            "{found:?}"
        );
        let either = check(
            "p99-limit",
            "kind = \"absolute\"\nthreshold = 0.5\ntest = \"statistical\"\ndirection = \"either\"\n",
        );
        let found = problems(&rule(&either));
        assert!(
            found[0].contains("direction = \"either\" with test"),
            "{found:?}"
        );
        // Recording only, or a limit above 0: accepted.
        let dry = check(
            "p99",
            "kind = \"relative\"\ntolerance = 0\ndry_run = true\n",
        );
        assert_eq!(problems(&rule(&dry)), Vec::<String>::new());
        let ok = check("p99", "kind = \"relative\"\ntolerance = 0.05\n");
        assert_eq!(problems(&rule(&ok)), Vec::<String>::new());
    }

    #[test]
    fn a_test_that_cannot_reach_significance_at_min_samples_is_refused_with_the_fewest_that_can() {
        // Mann-Kendall's smallest one-sided p-value: 5 points 0.0072, 6 points 0.0024 (< 0.005).
        let trend = |min: usize| {
            check(
                "memory",
                &format!("kind = \"trend\"\nmax_slope_per_minute = 1.0\nmin_samples = {min}\n"),
            )
        };
        let found = problems(&rule(&trend(5)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("`memory` can never fail: at min_samples = 5"),
            "{found:?}"
        );
        assert!(
            found[0].contains("set min_samples = 6 or more"),
            "{found:?}"
        );
        assert_eq!(problems(&rule(&trend(6))), Vec::<String>::new());
        // Next to two relative checks Holm gives it a third: 0.0017 needs 7 points (p 0.0008).
        let three = format!(
            "{}{}{}",
            trend(6),
            check("p99", "kind = \"relative\"\ntolerance = 0.1\n"),
            check("p50", "kind = \"relative\"\ntolerance = 0.1\n")
        );
        let found = problems(&rule(&three));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("cannot reach p < 0.00167 (its share after Holm"),
            "{found:?}"
        );
        assert!(
            found[0].contains("set min_samples = 7 or more"),
            "{found:?}"
        );
        // A p99 "below the threshold" needs all points below: 0.99^n < 0.005 at n ≥ 528.
        let low = check(
            "throughput",
            "kind = \"absolute\"\nthreshold = 100\naggregate = \"p99\"\ntest = \"statistical\"\n\
             direction = \"lower-is-worse\"\nmin_samples = 30\n",
        );
        let found = problems(&rule(&low));
        assert!(found[0].contains("binomial quantile test"), "{found:?}");
        assert!(
            found[0].contains("set min_samples = 528 or more"),
            "{found:?}"
        );
    }
}
