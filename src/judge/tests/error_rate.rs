//! Error-rate checks: Fisher's exact test or the z-test by the counts, and the tolerance.

use super::*;

#[test]
fn error_rates_use_fisher_when_small_and_z_when_large() {
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.001 },
        Direction::HigherIsWorse,
        100,
    );
    // 30 minutes of 100 requests: 0.5% vs 3%.
    let r = judge_check(&s, &counts(30, 0.5, 100.0), &counts(30, 3.0, 100.0));
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert_eq!(r.evidence.test.as_deref(), Some("Fisher's exact test"));
    assert_eq!(r.evidence.canary.errors, Some(90.0));
    assert_eq!(r.evidence.canary.rate, Some(0.03));
    // 30 minutes of 100,000 requests: 1% vs 1.5%.
    let r = judge_check(
        &s,
        &counts(30, 1000.0, 100_000.0),
        &counts(30, 1500.0, 100_000.0),
    );
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert_eq!(
        r.evidence.test.as_deref(),
        Some("two-proportion z-test (pooled)")
    );
    let e = r.evidence.effect.unwrap();
    assert!((e.difference - 0.005).abs() < 1e-12);
    assert!((e.ratio.unwrap() - 1.5).abs() < 1e-12);
    let i = e.interval.unwrap();
    assert!(i.low < 0.005 && 0.005 < i.high);
}

#[test]
fn error_rate_within_tolerance_passes_even_when_significant() {
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.001 },
        Direction::HigherIsWorse,
        100,
    );
    // 1.00% vs 1.08%: significant on 30M requests, but only 0.08 pp.
    let r = judge_check(&s, &counts(30, 10_000.0, 1e6), &counts(30, 10_800.0, 1e6));
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    assert!(r.evidence.p_value.unwrap() < 1e-6);
    assert!(
        r.reason.contains("within the 0.1 pp tolerance"),
        "{}",
        r.reason
    );
    // Per-minute rates are never averaged: one busy minute dominates as it should.
    let b = SideData::Counts(vec![
        CountPoint {
            t: 0.0,
            errors: 0.0,
            total: 10.0,
        },
        CountPoint {
            t: 60.0,
            errors: 10.0,
            total: 10_000.0,
        },
    ]);
    let c = SideData::Counts(vec![
        CountPoint {
            t: 0.0,
            errors: 5.0,
            total: 10.0,
        },
        CountPoint {
            t: 60.0,
            errors: 10.0,
            total: 10_000.0,
        },
    ]);
    let r = judge_check(&s, &b, &c);
    // Mean per-minute rate would be 25% vs 0.05% and fail; the summed rate is 0.15% vs 0.10%,
    // which 10,010 requests cannot show within 0.1 pp either.
    assert_eq!(
        r.verdict.cause(),
        Some(InconclusiveCause::NotShown),
        "{}",
        r.reason
    );
    assert!((r.evidence.canary.rate.unwrap() - 15.0 / 10_010.0).abs() < 1e-12);
}

/// Binomial(n, p) by inversion (n·p is a few here), or a normal draw where `(1-p)^n` underflows.
fn binomial(rng: &mut Rng, n: u64, p: f64) -> u64 {
    let p = p.clamp(0.0, 1.0);
    let q = 1.0 - p;
    let mut pmf = q.powf(n as f64);
    if pmf <= 0.0 {
        let mean = n as f64 * p;
        return (mean + (mean * q).sqrt() * rng.normal())
            .round()
            .clamp(0.0, n as f64) as u64;
    }
    let (u, mut cdf, mut k) = (rng.uniform(), pmf, 0u64);
    while u > cdf && k < n {
        pmf *= (n - k) as f64 / (k + 1) as f64 * p / q;
        k += 1;
        cdf += pmf;
    }
    k
}

/// 30 one-minute steps of `rpm` requests per side at 0.5% × `factor` (canary), each side's
/// rate multiplied per minute by its own log-normal factor of σ `sigma` and by one of σ `shared`
/// both sides see.
fn overdispersed(rng: &mut Rng, rpm: u64, sigma: f64, shared: f64, factor: f64) -> [SideData; 2] {
    let mut sides = [Vec::new(), Vec::new()];
    for i in 0..30 {
        let burst = (shared * rng.normal()).exp();
        for (side, f) in sides.iter_mut().zip([1.0, factor]) {
            let p = 0.005 * f * burst * (sigma * rng.normal()).exp();
            side.push(CountPoint {
                t: 60.0 * i as f64,
                errors: binomial(rng, rpm, p) as f64,
                total: rpm as f64,
            });
        }
    }
    sides.map(SideData::Counts)
}

/// How many of `trials` seeded analyses fail, and how many are inconclusive.
fn error_rate_outcomes(
    seed: u64,
    trials: usize,
    tolerance: f64,
    data: impl Fn(&mut Rng) -> [SideData; 2],
) -> (usize, usize) {
    let s = spec(
        CheckKind::ErrorRate { tolerance },
        Direction::HigherIsWorse,
        100,
    );
    let mut rng = Rng(seed);
    let (mut fail, mut inconclusive) = (0, 0);
    for _ in 0..trials {
        let [b, c] = data(&mut rng);
        match judge_check(&s, &b, &c).verdict {
            Verdict::Fail => fail += 1,
            Verdict::Inconclusive { .. } => inconclusive += 1,
            Verdict::Pass => {}
        }
    }
    (fail, inconclusive)
}

#[test]
fn overdispersed_healthy_counts_do_not_fail_more_often_than_the_confidence_allows() {
    // Each side's per-minute rate varies by its own log-normal factor, σ 0.5: summed counts are
    // ~1.7 times as variable as binomial. Judged as binomial, 2.1% of these healthy canaries
    // failed at 0.99 (one-sided level 0.5%).
    let trials = 2000;
    let (fail, _) = error_rate_outcomes(18_002, trials, 0.0, |rng| {
        overdispersed(rng, 500, 0.5, 0.0, 1.0)
    });
    // 0.5% expected; 1.2% is 3.5 standard errors above it.
    assert!(fail * 1000 <= trials * 12, "{fail} of {trials} failed");
}

/// Issue 18 point 3: a pass means "shown within the tolerance". 1,800 requests at the baseline's
/// own rate used to pass ("no significant difference") although they cannot tell 0.5% from
/// 1%.
#[test]
fn counts_that_cannot_show_the_tolerance_are_not_shown_with_the_bound() {
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.005 },
        Direction::HigherIsWorse,
        100,
    );
    // 30 minutes of 60 requests, 0.5% on both sides.
    let r = judge_check(&s, &counts(30, 0.3, 60.0), &counts(30, 0.3, 60.0));
    assert_eq!(
        r.verdict.cause(),
        Some(InconclusiveCause::NotShown),
        "{}",
        r.reason
    );
    assert!(
        r.reason.starts_with(
            "1,800 canary requests cannot show a 0.5 pp difference at 99%: the 99% bound on \
             the worsening is +0.7"
        ),
        "{}",
        r.reason
    );
    // The bound is the end of the effect's interval on the bad side.
    let i = r.evidence.effect.unwrap().interval.unwrap();
    assert!(i.high > 0.007 && i.high < 0.0071, "{i:?}");
    // Ten times the traffic shows it: the bound is within 0.5 pp, a pass that says so.
    let r = judge_check(&s, &counts(30, 3.0, 600.0), &counts(30, 3.0, 600.0));
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    let high = r.evidence.effect.unwrap().interval.unwrap().high;
    assert!(high < 0.005, "{high}");
    assert!(
        r.reason.contains("the 99% bound on the worsening is +0.")
            && r.reason.contains("within the 0.5 pp tolerance"),
        "{}",
        r.reason
    );
    // Lower is worse: the bound is the interval's low end.
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.005 },
        Direction::LowerIsWorse,
        100,
    );
    let r = judge_check(&s, &counts(30, 0.3, 60.0), &counts(30, 0.3, 60.0));
    assert!(
        r.reason.contains("the 99% bound on the worsening is -0.7"),
        "{}",
        r.reason
    );
}

#[test]
fn low_traffic_counts_keep_the_exact_test_on_the_observed_counts() {
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.001 },
        Direction::HigherIsWorse,
        100,
    );
    // 40 requests a minute, errors in bursts (0 most minutes, 3 in some): far from binomial per
    // step, but 0.2 errors a minute cannot be overdispersed by much.
    let bursty = |every: usize| {
        SideData::Counts(
            (0..30)
                .map(|i| CountPoint {
                    t: 60.0 * i as f64,
                    errors: if i % every == 0 { 3.0 } else { 0.0 },
                    total: 40.0,
                })
                .collect(),
        )
    };
    let r = judge_check(&s, &bursty(15), &bursty(5));
    assert_eq!(r.evidence.test.as_deref(), Some("Fisher's exact test"));
    let exact =
        crate::stats::fisher_exact([[18, 1182], [6, 1194]], crate::stats::Alternative::Greater)
            .unwrap()
            .p_value;
    assert_eq!(r.evidence.p_value, Some(exact));
    let how = r.evidence.comparison.unwrap();
    assert!(how.contains("judged as observed"), "{how}");
}

#[test]
fn overdispersed_counts_are_judged_on_effective_counts_and_say_so() {
    let s = spec(
        CheckKind::ErrorRate { tolerance: 0.0 },
        Direction::HigherIsWorse,
        100,
    );
    // The canary's per-minute errors swing between 1 and 14 of 500 while the baseline's stay
    // at 5: the canary's share of each minute's errors is far from binomial.
    let b = counts(30, 5.0, 500.0);
    let c = SideData::Counts(
        (0..30)
            .map(|i| CountPoint {
                t: 60.0 * i as f64,
                errors: if i % 2 == 0 { 1.0 } else { 14.0 },
                total: 500.0,
            })
            .collect(),
    );
    let r = judge_check(&s, &b, &c);
    assert_eq!(
        r.evidence.test.as_deref(),
        Some("Fisher's exact test on effective counts")
    );
    let how = r.evidence.comparison.unwrap();
    assert!(how.contains("paired dispersion"), "{how}");
    // 225 vs 150 errors in 15,000 requests: p ≈ 4e-5 as binomial, not significant once the
    // swings are counted.
    let binomial = crate::stats::fisher_exact(
        [[225, 14_775], [150, 14_850]],
        crate::stats::Alternative::Greater,
    )
    .unwrap()
    .p_value;
    assert!(binomial < 0.001, "{binomial}");
    assert!(
        r.evidence.p_value.unwrap() > 0.005,
        "{:?}",
        r.evidence.p_value
    );
    assert_ne!(r.verdict, Verdict::Fail, "{}", r.reason);
}

#[test]
fn bursts_both_sides_see_do_not_cost_detection() {
    // Shared per-minute bursts (σ 0.5) move both sides' rates together; they cancel in the
    // difference, so the paired dispersion does not widen the test and ×2 is still caught.
    let (fail, _) = error_rate_outcomes(18_003, 300, 0.0, |rng| {
        overdispersed(rng, 600, 0.0, 0.5, 2.0)
    });
    assert!(fail >= 270, "{fail} of 300 caught");
}
