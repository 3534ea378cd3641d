//! Warnings about valid rule files: what loads and runs, but most likely not as its author meant.
//!
//! This module owns the warnings `canaryd check` prints (and still exits 0 on). It is pure: it
//! reads a validated [`RolloutRule`] and the raw shapes it came from (for positions), never
//! refuses anything (that is `validate`'s job) and changes nothing.

use crate::judge::{CheckKind, ThresholdTest};

use super::model::RolloutRule;
use super::problem::{SourceText, Warning};
use super::raw::RawRule;

/// Every warning about a rule file that passed validation.
pub fn warnings(raw: &RawRule, rule: &RolloutRule, src: &SourceText<'_>) -> Vec<Warning> {
    let mut found: Vec<Warning> = last_stage_unjudged(raw, rule, src).into_iter().collect();
    found.extend(one_error_fails(raw, rule, src));
    found.extend(sustain_ignored(raw, rule, src));
    found
}

/// `for`/`consecutive` on a check judged on its stage's evidence (a relative check with a
/// direction, an error rate where higher is worse): its failures rest on bounds valid at every
/// look and act at the analysis that shows them, so the setting changes nothing (issue 19).
fn sustain_ignored(raw: &RawRule, rule: &RolloutRule, src: &SourceText<'_>) -> Vec<Warning> {
    rule.checks
        .iter()
        .filter(|c| crate::judge::staged_supports(&c.spec))
        .filter_map(|c| {
            let r = raw.checks.iter().find(|r| {
                r.get_ref().name.as_ref().map(|n| n.get_ref().as_str()) == Some(&*c.spec.name)
            })?;
            let r = r.get_ref();
            let (key, at) = match (&r.for_, &r.consecutive) {
                (Some(f), _) => ("for", f.span()),
                (None, Some(n)) => ("consecutive", n.span()),
                (None, None) => return None,
            };
            Some(Warning(src.problem(
                Some(at),
                format!(
                    "`{key}` has no effect on `{}`: it is judged on its stage's evidence, with bounds valid at every analysis, and a failure acts at the analysis that shows it",
                    c.spec.name
                ),
                Some(format!(
                    "remove `{key}` (it delays only absolute and trend checks, whose windows can blip)"
                )),
            )))
        })
        .collect()
}

/// Observed error-rate thresholds that one error fails: at `min_samples` requests a single error
/// is a rate of 1/`min_samples`, so when that is above the threshold the check fails on the
/// first error of a quiet window, which is noise, not a regression.
fn one_error_fails(raw: &RawRule, rule: &RolloutRule, src: &SourceText<'_>) -> Vec<Warning> {
    rule.checks
        .iter()
        .filter_map(|c| {
            let CheckKind::ErrorRateAbsolute {
                threshold,
                test: ThresholdTest::Observed,
            } = c.spec.kind
            else {
                return None;
            };
            let n = c.spec.min_samples.max(1) as f64;
            if !(threshold > 0.0 && 1.0 / n > threshold) {
                return None;
            }
            let at = raw
                .checks
                .iter()
                .find(|r| r.get_ref().name.as_ref().map(|n| n.get_ref().as_str()) == Some(&*c.spec.name))
                .map(|r| r.span());
            let enough = (10.0 / threshold).ceil();
            Some(Warning(src.problem(
                at,
                format!(
                    "`{}` compares the observed error rate with {} over at least {} requests: one error in {} requests is {}, above the threshold, so a single error fails it",
                    c.spec.name,
                    percent(threshold),
                    c.spec.min_samples,
                    c.spec.min_samples,
                    percent(1.0 / n),
                ),
                Some(format!(
                    "raise `min_samples` to at least {} (one error then stays under the threshold; {enough} gives ten errors' worth), or set test = \"statistical\"",
                    (1.0 / threshold).floor() as u64 + 1
                )),
            )))
        })
        .collect()
}

/// A rate as a percentage, without trailing zeros: 0.005 is "0.5%".
fn percent(rate: f64) -> String {
    let text = format!("{:.4}", rate * 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// Whether a check of this kind compares the canary with the baseline, and so can judge
/// nothing once the baseline has no traffic (at weight 100).
pub fn needs_baseline(kind: &CheckKind) -> bool {
    match kind {
        CheckKind::Relative { .. } | CheckKind::ErrorRate { .. } => true,
        CheckKind::Absolute { .. }
        | CheckKind::ErrorRateAbsolute { .. }
        | CheckKind::Trend { .. } => false,
    }
}

/// A plan whose last stage is at 100% while every check needs the baseline: at that stage the
/// baseline gets no traffic, so no check can judge it and the canary runs unwatched.
fn last_stage_unjudged(raw: &RawRule, rule: &RolloutRule, src: &SourceText<'_>) -> Option<Warning> {
    let last = rule.plan.stages.last()?;
    if last.weight < 100 || rule.checks.is_empty() {
        return None;
    }
    if !rule.checks.iter().all(|c| needs_baseline(&c.spec.kind)) {
        return None;
    }
    let at = raw.stages.last().map(|s| s.span());
    let checks: Vec<String> = rule
        .checks
        .iter()
        .map(|c| {
            let kind = match c.spec.kind {
                CheckKind::ErrorRate { .. } => "error-rate",
                _ => "relative",
            };
            format!("`{}` is {kind}", c.spec.name)
        })
        .collect();
    Some(Warning(src.problem(
        at,
        format!(
            "the last stage `{}` runs at weight 100, where the baseline has no traffic, and every check compares with the baseline ({}): none can judge this stage",
            last.name,
            checks.join(", ")
        ),
        Some(
            "add a check that judges the canary alone: kind = \"absolute\" (e.g. p99 <= 0.5 s), \"error-rate-absolute\" (e.g. errors <= 1%) or \"trend\""
                .into(),
        ),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{Aggregate, ThresholdTest};
    use std::path::Path;

    #[test]
    fn only_relative_and_error_rate_checks_need_the_baseline() {
        let cases = [
            (CheckKind::Relative { tolerance: 0.1 }, true),
            (CheckKind::ErrorRate { tolerance: 0.01 }, true),
            (
                CheckKind::Absolute {
                    threshold: 0.5,
                    aggregate: Aggregate::Mean,
                    test: ThresholdTest::Observed,
                },
                false,
            ),
            (
                CheckKind::ErrorRateAbsolute {
                    threshold: 0.01,
                    test: ThresholdTest::Observed,
                },
                false,
            ),
            (
                CheckKind::Trend {
                    max_slope_per_minute: 1.0,
                },
                false,
            ),
        ];
        for (kind, needs) in cases {
            assert_eq!(needs_baseline(&kind), needs, "{kind:?}");
        }
    }

    /// The warning for a rule file with these stage weights and check kinds, if any.
    fn warned(weights: &[u8], kinds: &[&str]) -> Option<String> {
        let mut text = String::from(
            "[rollout]\nname = \"r\"\nteam = \"t\"\nsource = \"s\"\nactuator = \"a\"\n\
             [analysis]\nevery = \"1m\"\n[sides]\nbaseline = \"v1\"\ncanary = \"v2\"\n",
        );
        for w in weights {
            text += &format!("[[stages]]\nname = \"s{w}\"\nweight = {w}\n");
        }
        for (i, kind) in kinds.iter().enumerate() {
            let param = match *kind {
                "relative" | "error-rate" => "tolerance = 0.1",
                "trend" => "max_slope_per_minute = 1.0",
                _ => "threshold = 0.1",
            };
            let query = if kind.starts_with("error-rate") {
                "errors_query = 'e{v=\"{{side}}\"}'\ntotal_query = 't{v=\"{{side}}\"}'"
            } else {
                "query = 'q{v=\"{{side}}\"}'"
            };
            text += &format!(
                "[[checks]]\nname = \"c{i}\"\nkind = \"{kind}\"\n{param}\n{query}\nwindow = \"5m\"\n"
            );
        }
        let warnings = warnings_of(&text);
        assert!(warnings.len() <= 1);
        warnings.into_iter().next()
    }

    /// The warnings `check` gives for a rule file `r.toml` holding `text` (which must parse).
    fn warnings_of(text: &str) -> Vec<String> {
        let known = crate::rules::KnownNames::any();
        let (parsed, warnings) =
            crate::rules::parse_rule_with_warnings(Path::new("r.toml"), text, &known);
        parsed.unwrap();
        warnings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_observed_error_rate_threshold_that_one_error_fails_is_warned() {
        let rule = |threshold: &str, extra: &str| {
            format!(
                "[rollout]\nname = \"r\"\nteam = \"t\"\nsource = \"s\"\nactuator = \"a\"\n\
                 [analysis]\nevery = \"1m\"\n[sides]\nbaseline = \"v1\"\ncanary = \"v2\"\n\
                 [[stages]]\nname = \"s10\"\nweight = 10\n\
                 [[checks]]\nname = \"errors\"\nkind = \"error-rate-absolute\"\nthreshold = {threshold}\n\
                 errors_query = 'e{{v=\"{{{{side}}}}\"}}'\ntotal_query = 't{{v=\"{{{{side}}}}\"}}'\n\
                 window = \"5m\"\n{extra}"
            )
        };
        let found = warnings_of(&rule("0.005", "min_samples = 100\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("r.toml:14:1: warning: `errors`"),
            "{found:?}"
        );
        assert!(
            found[0].contains("one error in 100 requests is 1%, above the threshold"),
            "{found:?}"
        );
        assert!(found[0].contains("at least 201"), "{found:?}");
        // Enough requests, the statistical test, or one error exactly at the threshold: quiet.
        for (threshold, extra) in [
            ("0.005", "min_samples = 201\n"),
            ("0.005", "min_samples = 100\ntest = \"statistical\"\n"),
            ("0.01", "min_samples = 100\n"),
        ] {
            assert_eq!(
                warnings_of(&rule(threshold, extra)),
                Vec::<String>::new(),
                "{extra}"
            );
        }
    }

    #[test]
    fn a_last_stage_at_100_is_warned_only_when_every_check_needs_the_baseline() {
        let warning = warned(&[10, 100], &["relative", "error-rate"]).unwrap();
        assert!(
            warning.starts_with("r.toml:14:1: warning: the last stage `s100`"),
            "{warning}"
        );
        for (weights, kinds) in [
            (&[10, 50][..], &["relative"][..]),
            (&[10, 100], &["relative", "absolute"]),
            (&[100], &["error-rate-absolute"]),
            (&[10, 100], &["trend", "error-rate"]),
        ] {
            assert_eq!(warned(weights, kinds), None, "{weights:?} {kinds:?}");
        }
    }

    #[test]
    fn for_or_consecutive_on_a_check_judged_on_its_stage_is_warned_as_having_no_effect() {
        let rule = |kind: &str, param: &str, sustain: &str| {
            format!(
                "[rollout]\nname = \"r\"\nteam = \"t\"\nsource = \"s\"\nactuator = \"a\"\n\
                 [analysis]\nevery = \"1m\"\n[sides]\nbaseline = \"v1\"\ncanary = \"v2\"\n\
                 [[stages]]\nname = \"s10\"\nweight = 10\n\
                 [[checks]]\nname = \"c\"\nkind = \"{kind}\"\n{param}\n\
                 query = 'q{{v=\"{{{{side}}}}\"}}'\nwindow = \"5m\"\n{sustain}\n"
            )
        };
        let found = warnings_of(&rule("relative", "tolerance = 0.1", "consecutive = 2"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("r.toml:20:15: warning: `consecutive` has no effect on `c`"),
            "{found:?}"
        );
        assert!(found[0].contains("remove `consecutive`"), "{found:?}");
        let found = warnings_of(&rule("relative", "tolerance = 0.1", "for = \"15m\""));
        assert!(found[0].contains("`for` has no effect on `c`"), "{found:?}");
        // An absolute threshold keeps its `for`; a two-sided relative check is not staged.
        for (kind, param) in [
            ("absolute", "threshold = 0.5"),
            (
                "relative",
                "tolerance = 0.1\ndirection = \"either\"\ndry_run = true",
            ),
        ] {
            let quiet = warnings_of(&rule(kind, param, "for = \"5m\""));
            assert!(
                quiet.iter().all(|w| !w.contains("has no effect")),
                "{kind}: {quiet:?}"
            );
        }
    }
}
