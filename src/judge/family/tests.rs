//! Tables of cases for Holm's correction over an analysis's checks.

use super::super::summary::fmt_num;
use super::super::{
    CheckKind, CountPoint, Direction, Evidence, Point, SideSummary, ThresholdTest, Thresholds,
    judge_check,
};
use super::*;

fn spec(name: &str, kind: CheckKind, confidence: f64) -> CheckSpec {
    CheckSpec {
        name: name.into(),
        kind,
        direction: Direction::HigherIsWorse,
        confidence,
        min_samples: 10,
    }
}

fn relative_spec(name: &str) -> CheckSpec {
    spec(name, CheckKind::Relative { tolerance: 0.05 }, 0.99)
}

/// A check judged on its own with p-value `p`, reasoned the way the kinds reason: `Fail` when
/// `p` is below the check's own significance (its estimate is beyond the tolerance).
fn tested(spec: &CheckSpec, p: f64) -> CheckResult {
    let alpha = significance_level(spec);
    let (verdict, reason) = if p < alpha {
        (
            Verdict::Fail,
            format!(
                "canary +12.0% vs baseline: beyond the 5% tolerance above baseline, {}",
                significant_clause(p, alpha)
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!(
                "canary +1.0% vs baseline: no significant difference, p = {} ≥ {}",
                fmt_p(p),
                fmt_num(alpha)
            ),
        )
    };
    CheckResult {
        name: spec.name.to_string(),
        verdict,
        reason,
        evidence: Evidence {
            baseline: SideSummary::default(),
            canary: SideSummary::default(),
            effect: None,
            p_value: Some(p),
            test: Some("Wilcoxon signed-rank".into()),
            comparison: None,
            thresholds: Thresholds::of(spec),
            family: None,
            notes: Vec::new(),
            decision: None,
        },
    }
}

/// A family of relative checks at confidence 0.99 with these p-values, corrected with Holm.
fn corrected(ps: &[f64]) -> Vec<CheckResult> {
    let specs: Vec<CheckSpec> = (0..ps.len())
        .map(|i| relative_spec(&format!("c{}", i + 1)))
        .collect();
    let mut results: Vec<CheckResult> = specs.iter().zip(ps).map(|(s, p)| tested(s, *p)).collect();
    let refs: Vec<&CheckSpec> = specs.iter().collect();
    apply_family_control(&refs, &mut results, FamilyControl::Holm);
    results
}

fn verdicts(results: &[CheckResult]) -> Vec<&'static str> {
    results.iter().map(|r| r.verdict.as_str()).collect()
}

/// Healthy p-values for the rest of a family: spread over (0.05, 1).
fn healthy(n: usize) -> Vec<f64> {
    (0..n).map(|i| 0.05 + 0.9 * i as f64 / n as f64).collect()
}

#[test]
fn holm_table() {
    struct Case {
        what: &'static str,
        ps: Vec<f64>,
        verdicts: Vec<&'static str>,
    }
    let with = |first: &[f64], rest: usize| {
        let mut ps = first.to_vec();
        ps.extend(healthy(rest));
        ps
    };
    let pass_all = |n: usize| vec!["pass"; n];
    let cases = [
        Case {
            what: "a healthy 10-check family with one p = 0.004 (fails alone) does not fail it",
            ps: with(&[0.004], 9),
            verdicts: [vec!["inconclusive"], pass_all(9)].concat(),
        },
        Case {
            what: "a genuinely bad check (p = 1e-8) still fails among 20",
            ps: with(&[1e-8], 19),
            verdicts: [vec!["fail"], pass_all(19)].concat(),
        },
        Case {
            what: "step-down: every p below its step's threshold fails (Bonferroni would \
                   fail only the first)",
            // Thresholds 0.005/4, /3, /2, /1 = 0.00125, 0.00167, 0.0025, 0.005.
            ps: vec![0.001, 0.0016, 0.002, 0.0049],
            verdicts: vec!["fail"; 4],
        },
        Case {
            what: "step-down stops at the first non-rejection: later, smaller-than-their-step \
                   p-values pass too",
            // 0.0018 ≥ 0.00167 stops; 0.002 < 0.0025 and 0.0049 < 0.005 do not count.
            ps: vec![0.001, 0.0018, 0.002, 0.0049],
            verdicts: vec!["fail", "inconclusive", "inconclusive", "inconclusive"],
        },
        Case {
            what: "the order is by p-value, not by position",
            ps: vec![0.0049, 0.002, 0.0018, 0.001],
            verdicts: vec!["inconclusive", "inconclusive", "inconclusive", "fail"],
        },
    ];
    for case in cases {
        let results = corrected(&case.ps);
        assert_eq!(verdicts(&results), case.verdicts, "{}", case.what);
    }
}

#[test]
fn a_significant_check_within_its_tolerance_still_steps_the_procedure_down() {
    let (a, b) = (relative_spec("a"), relative_spec("b"));
    // `a` is significant (p = 0.0001) but within its tolerance: it passes, yet its hypothesis of
    // "no change" is rejected, so `b` is compared with 0.005 / 1, not 0.005 / 2.
    let mut within = tested(&a, 0.0001);
    within.verdict = Verdict::Pass;
    within.reason =
        "canary +2.0% vs baseline: significant (p = 0.0001) but within the 5% tolerance".into();
    let mut results = vec![within.clone(), tested(&b, 0.003)];
    apply_family_control(&[&a, &b], &mut results, FamilyControl::Holm);
    assert_eq!(results[0].verdict, Verdict::Pass);
    assert_eq!(results[0].reason, within.reason);
    assert_eq!(results[1].verdict, Verdict::Fail, "{}", results[1].reason);
    assert!(
        results[1]
            .reason
            .contains("p = 0.0030 < 0.005 after Holm's correction over 2 checks")
    );
}

#[test]
fn a_check_the_correction_does_not_fail_says_why_and_records_the_family() {
    let results = corrected(&[0.004, 0.3, 0.5, 0.7, 0.9]);
    let r = &results[0];
    assert_eq!(r.verdict.cause(), Some(InconclusiveCause::NotShown));
    assert_eq!(
        r.reason,
        "canary +12.0% vs baseline: beyond the 5% tolerance above baseline, p = 0.0040 is not \
         significant after Holm's correction over 5 checks (needs < 0.001)"
    );
    let family = r.evidence.family.expect("family evidence");
    assert_eq!(family.method, FamilyControl::Holm);
    assert_eq!((family.checks, family.rank), (5, 1));
    assert!((family.significance - 0.005).abs() < 1e-15);
    assert!((family.threshold - 0.001).abs() < 1e-15);
    assert!((family.adjusted_p_value - 0.02).abs() < 1e-12);
    assert!(!family.significant);
    // The healthy ones keep their reasons and get the family recorded too.
    assert!(results[1].reason.contains("no significant difference"));
    assert_eq!(results[4].evidence.family.map(|f| f.rank), Some(5));
    // Adjusted p-values never decrease along Holm's order.
    let adjusted: Vec<f64> = results
        .iter()
        .map(|r| r.evidence.family.unwrap().adjusted_p_value)
        .collect();
    assert!(adjusted.windows(2).all(|w| w[0] <= w[1]), "{adjusted:?}");
}

#[test]
fn a_check_that_stays_failed_states_the_corrected_threshold() {
    let mut ps = vec![1e-8];
    ps.extend(healthy(19));
    let r = &corrected(&ps)[0];
    assert_eq!(r.verdict, Verdict::Fail);
    assert_eq!(
        r.reason,
        "canary +12.0% vs baseline: beyond the 5% tolerance above baseline, p = 1.0e-8 < 0.00025 \
         after Holm's correction over 20 checks"
    );
    let family = r.evidence.family.unwrap();
    assert!(family.significant && family.adjusted_p_value < family.significance);
}

#[test]
fn a_check_after_the_stop_names_where_the_step_down_stopped() {
    let results = corrected(&[0.001, 0.0018, 0.002, 0.0049]);
    // 0.002 is below its own step's threshold (0.0025), so the reason cannot be "needs < …".
    assert!(
        results[2]
            .reason
            .contains("the step-down stopped at `c2`, which needed p < 0.0017"),
        "{}",
        results[2].reason
    );
    assert!(
        results[1].reason.ends_with("(needs < 0.0017)"),
        "{}",
        results[1].reason
    );
}

#[test]
fn checks_without_a_p_value_are_untouched_and_not_counted() {
    let absolute = spec(
        "p99-slo",
        CheckKind::Absolute {
            threshold: 0.5,
            aggregate: crate::judge::Aggregate::Quantile(0.99),
            test: ThresholdTest::Observed,
        },
        0.99,
    );
    let thin = relative_spec("thin");
    let (a, b) = (relative_spec("a"), relative_spec("b"));
    let mut absolute_fail = tested(&absolute, 0.5);
    absolute_fail.verdict = Verdict::Fail;
    absolute_fail.reason = "canary p99 0.7 is above the threshold 0.5".into();
    absolute_fail.evidence.p_value = None;
    let inconclusive = CheckResult {
        verdict: Verdict::inconclusive(crate::judge::InconclusiveCause::TooFew, "too few points"),
        reason: "too few points".into(),
        ..tested(&thin, 1e-6)
    };
    let before = vec![
        absolute_fail.clone(),
        inconclusive.clone(),
        tested(&a, 0.002),
        tested(&b, 0.6),
    ];
    let mut results = before.clone();
    apply_family_control(
        &[&absolute, &thin, &a, &b],
        &mut results,
        FamilyControl::Holm,
    );
    assert_eq!(results[0], before[0]);
    assert_eq!(results[1], before[1]);
    // The family is the two tested checks: 0.002 < 0.005 / 2.
    assert_eq!(results[2].verdict, Verdict::Fail);
    assert!(results[2].reason.ends_with("over 2 checks"));
    assert_eq!(results[3].evidence.family.map(|f| f.checks), Some(2));
}

#[test]
fn per_check_control_and_one_tested_check_change_nothing() {
    let specs: Vec<CheckSpec> = ["a", "b", "c"].map(relative_spec).to_vec();
    let refs: Vec<&CheckSpec> = specs.iter().collect();
    let before: Vec<CheckResult> = specs
        .iter()
        .zip([0.004, 0.003, 0.9])
        .map(|(s, p)| tested(s, p))
        .collect();
    let mut results = before.clone();
    apply_family_control(&refs, &mut results, FamilyControl::PerCheck);
    assert_eq!(results, before);
    let mut one = vec![tested(&specs[0], 0.004)];
    apply_family_control(&refs[..1], &mut one, FamilyControl::Holm);
    assert_eq!(one, vec![tested(&specs[0], 0.004)]);
}

#[test]
fn a_stricter_check_never_gets_a_looser_threshold() {
    // An `Either` check at 0.99 (1%) and a directional one at 0.999 (0.05%).
    let mut either = relative_spec("either");
    either.direction = Direction::Either;
    let strict = spec("strict", CheckKind::Relative { tolerance: 0.05 }, 0.999);
    let mut results = vec![tested(&either, 1e-6), tested(&strict, 0.0008)];
    // The strict check fails only below its own 0.0005, so 0.0008 passes alone already.
    assert_eq!(results[1].verdict, Verdict::Pass);
    results[1].verdict = Verdict::Fail;
    results[1].reason = format!("…, {}", significant_clause(0.0008, 0.0005));
    apply_family_control(&[&either, &strict], &mut results, FamilyControl::Holm);
    let family = results[1].evidence.family.unwrap();
    // After the `Either` check is rejected, the plain weighted threshold would be 0.01; it is
    // capped at the check's own 0.0005.
    assert!((family.threshold - 0.0005).abs() < 1e-15, "{family:?}");
    assert!((family.significance - 0.01).abs() < 1e-15);
    assert_eq!(
        results[1].verdict.cause(),
        Some(InconclusiveCause::NotShown)
    );
    assert_eq!(results[0].verdict, Verdict::Fail);
}

// ---- Through the real judge. ----

use crate::judge::tests::Rng;

/// 30 one-minute p99 points around 200 ms with 10% noise, times `factor`.
fn p99(seed: u64, factor: f64) -> SideData {
    let mut rng = Rng(seed);
    SideData::Values(
        (0..30)
            .map(|i| Point {
                t: 60.0 * i as f64,
                v: 200.0 * factor * (0.1 * rng.normal()).exp(),
            })
            .collect(),
    )
}

fn counts(errors: f64, total: f64) -> SideData {
    SideData::Counts(
        (0..10)
            .map(|i| CountPoint {
                t: 60.0 * i as f64,
                errors: errors / 10.0,
                total: total / 10.0,
            })
            .collect(),
    )
}

#[test]
fn a_single_check_is_judged_exactly_as_judge_check() {
    let s = relative_spec("p99");
    let cases = [
        (p99(1, 1.0), p99(2, 1.0)),
        (p99(3, 1.0), p99(4, 1.5)),
        (p99(5, 1.0), SideData::Values(vec![])),
    ];
    for (b, c) in &cases {
        assert_eq!(
            judge_analysis(&[(&s, b, c)], FamilyControl::Holm),
            vec![judge_check(&s, b, c)]
        );
    }
}

#[test]
fn a_bad_canary_still_fails_inside_a_twenty_check_analysis() {
    let specs: Vec<CheckSpec> = (0..20)
        .map(|i| relative_spec(&format!("latency-{i}")))
        .collect();
    let data: Vec<(SideData, SideData)> = (0..20u64)
        .map(|i| {
            let factor = if i == 7 { 1.5 } else { 1.0 };
            (p99(100 + 2 * i, 1.0), p99(101 + 2 * i, factor))
        })
        .collect();
    let checks: Vec<(&CheckSpec, &SideData, &SideData)> = specs
        .iter()
        .zip(&data)
        .map(|(s, (b, c))| (s, b, c))
        .collect();
    let results = judge_analysis(&checks, FamilyControl::Holm);
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(failed, vec!["latency-7"]);
    assert!(
        results[7]
            .reason
            .ends_with("after Holm's correction over 20 checks")
    );
    assert!(results[7].evidence.p_value.unwrap() < 1e-6);
    // Per check, the same verdicts as judge_check for every check that did not fail alone.
    let alone = judge_analysis(&checks, FamilyControl::PerCheck);
    for (r, a) in results.iter().zip(&alone) {
        assert_eq!(r.evidence.p_value, a.evidence.p_value);
        if a.verdict != Verdict::Fail {
            assert_eq!(r.verdict, a.verdict);
        }
    }
}

#[test]
fn borderline_error_rate_in_a_two_check_analysis_is_not_shown_with_the_holm_reason() {
    // 60 vs 95 errors in 20,000 requests each: one-sided p between 0.0025 and 0.005, so the
    // check fails alone and passes next to a healthy latency check.
    let errors = spec("errors", CheckKind::ErrorRate { tolerance: 0.001 }, 0.99);
    let latency = relative_spec("p99");
    let (eb, ec) = (counts(60.0, 20_000.0), counts(95.0, 20_000.0));
    let (lb, lc) = (p99(1, 1.0), p99(2, 1.0));
    let alone = judge_check(&errors, &eb, &ec);
    let p = alone.evidence.p_value.unwrap();
    assert!(p > 0.0025 && p < 0.005, "{p}");
    assert_eq!(alone.verdict, Verdict::Fail, "{}", alone.reason);
    let results = judge_analysis(
        &[(&latency, &lb, &lc), (&errors, &eb, &ec)],
        FamilyControl::Holm,
    );
    assert_eq!(
        results[1].verdict.cause(),
        Some(InconclusiveCause::NotShown)
    );
    assert!(
        results[1]
            .reason
            .starts_with("canary error rate 0.475% vs baseline 0.300%")
            && results[1].reason.ends_with(
                "is not significant after Holm's correction over 2 checks (needs < 0.0025)"
            ),
        "{}",
        results[1].reason
    );
}

#[test]
fn every_kind_ends_its_fail_reason_with_the_clause_the_correction_restates() {
    let nothing = SideData::Values(vec![]);
    let trend = spec(
        "memory",
        CheckKind::Trend {
            max_slope_per_minute: 1.0,
        },
        0.99,
    );
    let growing = SideData::Values(
        (0..30)
            .map(|i| Point {
                t: 60.0 * i as f64,
                v: 500.0 + 3.0 * i as f64 + (i % 3) as f64,
            })
            .collect(),
    );
    let cases = [
        (relative_spec("p99"), p99(1, 1.0), p99(2, 1.5)),
        (
            spec("errors", CheckKind::ErrorRate { tolerance: 0.001 }, 0.99),
            counts(50.0, 10_000.0),
            counts(200.0, 10_000.0),
        ),
        (
            spec(
                "error-slo",
                CheckKind::ErrorRateAbsolute {
                    threshold: 0.005,
                    test: ThresholdTest::Statistical,
                },
                0.99,
            ),
            nothing.clone(),
            counts(300.0, 10_000.0),
        ),
        (trend, nothing, growing),
    ];
    for (s, b, c) in &cases {
        let r = judge_check(s, b, c);
        assert_eq!(r.verdict, Verdict::Fail, "{}: {}", s.name, r.reason);
        let clause = significant_clause(r.evidence.p_value.unwrap(), significance_level(s));
        assert!(r.reason.ends_with(&clause), "{}: {}", s.name, r.reason);
    }
}

#[test]
fn family_evidence_serialises_only_when_present() {
    let s = relative_spec("p99");
    let alone = judge_check(&s, &p99(1, 1.0), &p99(2, 1.0));
    let json = serde_json::to_value(&alone).unwrap();
    assert!(json["evidence"].get("family").is_none());
    let results = corrected(&[0.004, 0.5]);
    let json = serde_json::to_value(&results[0]).unwrap();
    assert_eq!(json["evidence"]["family"]["method"], "holm");
    assert_eq!(json["evidence"]["family"]["checks"], 2);
    let back: CheckResult = serde_json::from_value(json).unwrap();
    assert_eq!(back, results[0]);
}

#[test]
fn levels_read_with_two_significant_digits() {
    for (x, text) in [
        (0.005, "0.005"),
        (0.001, "0.001"),
        (0.0005, "0.0005"),
        (0.00025, "0.00025"),
        (0.005 / 3.0, "0.0017"),
        (0.0025, "0.0025"),
        (0.01, "0.01"),
        (2.5e-5, "2.5e-5"),
    ] {
        assert_eq!(fmt_level(x), text);
    }
}

/// A check not shown within its tolerance was tested all the same: it counts in the family, or
/// the family would be chosen after seeing the data (the checks a pass or a fail came out of).
#[test]
fn a_check_not_shown_within_its_tolerance_counts_in_the_family() {
    let (a, b) = (relative_spec("a"), relative_spec("b"));
    let mut thin = tested(&a, 0.3);
    thin.verdict = Verdict::inconclusive(InconclusiveCause::NotShown, "10 points cannot show 5%");
    let mut results = vec![thin.clone(), tested(&b, 0.004)];
    apply_family_control(&[&a, &b], &mut results, FamilyControl::Holm);
    // 0.004 fails alone, not against 0.005 / 2.
    assert_eq!(
        results[1].verdict.cause(),
        Some(InconclusiveCause::NotShown)
    );
    assert_eq!(results[1].evidence.family.map(|f| f.checks), Some(2));
    assert_eq!(results[0].verdict, thin.verdict);
    // Other inconclusive checks (no data, too few points) still stay out.
    let mut few = tested(&a, 0.3);
    few.verdict = Verdict::inconclusive(InconclusiveCause::TooFew, "too few points");
    let mut results = vec![few, tested(&b, 0.004)];
    apply_family_control(&[&a, &b], &mut results, FamilyControl::Holm);
    assert_eq!(results[1].verdict, Verdict::Fail);
}
