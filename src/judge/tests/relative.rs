//! Relative checks: pairing by timestamp against a shared load wave, the verdict table, the
//! unpaired comparison without timestamps, differences for values that are not all positive,
//! false alarms on healthy correlated minutes and thin data that cannot show a pass.

use super::*;

#[test]
fn shared_load_wave_paired_detects_ten_percent_that_unpaired_misses() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let (b, c) = load_wave(42, 0.0);
    let paired = judge_check(&s, &b, &c);
    assert_eq!(paired.verdict, Verdict::Fail, "{}", paired.reason);
    assert_eq!(
        paired.evidence.comparison.as_deref(),
        Some(
            "paired log-ratio by timestamp, 30 of 30 points paired (nearest within half the 60s \
             step)"
        )
    );
    let ratio = paired.evidence.effect.and_then(|e| e.ratio).unwrap();
    assert!((ratio - 1.10).abs() < 0.02, "{ratio}");
    // The same values 30 s apart cannot be paired: the wave swamps the shift, and the
    // unpaired comparison can show neither a failure nor that the canary is within 5%.
    let (b, c) = load_wave(42, 30.0);
    let unpaired = judge_check(&s, &b, &c);
    assert_eq!(
        unpaired.verdict.cause(),
        Some(InconclusiveCause::NotShown),
        "{}",
        unpaired.reason
    );
    let cmp = unpaired.evidence.comparison.unwrap();
    assert!(cmp.starts_with("mean logs, unpaired"), "{cmp}");
    assert!(unpaired.evidence.p_value.unwrap() > 0.01);
}

#[test]
fn small_jitter_in_timestamps_still_pairs() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let (b, c) = load_wave(7, 0.4);
    let r = judge_check(&s, &b, &c);
    assert!(r.evidence.comparison.unwrap().starts_with("paired"));
}

/// Issue 18 point 6: exports and backends that jitter put the two sides' points at different
/// moments. Each point pairs with its nearest neighbour on the other side within half a step
/// (here one minute), so the shared load wave still cancels; points exactly half a step from
/// both neighbours, or farther, stay unpaired and the check falls back to the unpaired test.
#[test]
fn points_off_by_a_fraction_of_a_step_pair_with_their_nearest_neighbour() {
    let s = relative(0.05, Direction::HigherIsWorse);
    // (canary offset in steps, points paired, verdict)
    let cases = [
        (0.0, 30, Verdict::Fail),
        (0.3, 30, Verdict::Fail),
        (-0.3, 30, Verdict::Fail),
        (0.45, 30, Verdict::Fail),
        // Equally near two baseline points: which one is not known, so neither.
        (
            0.5,
            0,
            Verdict::inconclusive(InconclusiveCause::NotShown, ""),
        ),
        // Nearer the next minute's baseline point: paired with it (29 of 30), but the canary's
        // minute is not the baseline's, so the wave no longer cancels: what is left of it is a
        // slow swing in the log-ratios, worth few independent points, which can show neither.
        (
            0.8,
            29,
            Verdict::inconclusive(InconclusiveCause::NotShown, ""),
        ),
    ];
    for (offset, paired, verdict) in cases {
        let (b, c) = load_wave(42, 60.0 * offset);
        let r = judge_check(&s, &b, &c);
        let cmp = r.evidence.comparison.clone().unwrap();
        if paired > 0 {
            assert_eq!(
                cmp,
                format!(
                    "paired log-ratio by timestamp, {paired} of 30 points paired (nearest \
                     within half the 60s step)"
                ),
                "offset {offset}"
            );
        } else {
            assert!(cmp.contains("unpaired"), "offset {offset}: {cmp}");
            assert!(
                cmp.contains("0 of 30 points paired within half the 60s step"),
                "offset {offset}: {cmp}"
            );
        }
        assert_eq!(
            r.verdict.as_str(),
            verdict.as_str(),
            "offset {offset}: {}",
            r.reason
        );
    }
}

/// Per-point jitter of up to 0.15 of a step on each side (0.3 between partners): every point
/// still finds its partner.
#[test]
fn points_jittering_on_both_sides_all_pair() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let (b, c) = load_wave(9, 0.0);
    let mut rng = Rng(11);
    let mut jitter = |side: SideData| match side {
        SideData::Values(points) => SideData::Values(
            points
                .into_iter()
                .map(|p| Point {
                    t: p.t + 9.0 * (2.0 * rng.uniform() - 1.0),
                    v: p.v,
                })
                .collect(),
        ),
        counts => counts,
    };
    let (b, c) = (jitter(b), jitter(c));
    let r = judge_check(&s, &b, &c);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    let cmp = r.evidence.comparison.unwrap();
    assert!(cmp.contains("30 of 30 points paired"), "{cmp}");
    let ratio = r.evidence.effect.and_then(|e| e.ratio).unwrap();
    assert!((ratio - 1.10).abs() < 0.02, "{ratio}");
}

#[test]
fn verdict_table_for_relative_checks() {
    use Direction::*;
    // (canary level vs baseline 100, noise, tolerance, direction, expected)
    let cases = [
        // significant but within tolerance → pass
        (
            103.0,
            0.01,
            0.05,
            HigherIsWorse,
            Verdict::Pass,
            "within the 5.0% tolerance",
        ),
        // significant and beyond tolerance → fail
        (
            120.0,
            0.02,
            0.05,
            HigherIsWorse,
            Verdict::Fail,
            "beyond the 5.0% tolerance above baseline",
        ),
        // beyond tolerance but too noisy to be significant: not shown within it either
        (
            108.0,
            0.60,
            0.05,
            HigherIsWorse,
            Verdict::inconclusive(InconclusiveCause::NotShown, ""),
            "30 points cannot show the canary within +5.0% at 99%: the bound is +",
        ),
        // better in the direction that is good → pass
        (
            80.0,
            0.02,
            0.05,
            HigherIsWorse,
            Verdict::Pass,
            "within the 5.0% tolerance, shown at 99%",
        ),
        (
            80.0,
            0.02,
            0.05,
            LowerIsWorse,
            Verdict::Fail,
            "below baseline",
        ),
        (
            120.0,
            0.02,
            0.05,
            LowerIsWorse,
            Verdict::Pass,
            "within the 5.0% tolerance",
        ),
        (
            80.0,
            0.02,
            0.05,
            Either,
            Verdict::Fail,
            "away from baseline",
        ),
        (
            120.0,
            0.02,
            0.05,
            Either,
            Verdict::Fail,
            "away from baseline",
        ),
        (101.0, 0.02, 0.05, Either, Verdict::Pass, ""),
    ];
    for (i, (level, sigma, tol, dir, want, words)) in cases.into_iter().enumerate() {
        let s = relative(tol, dir);
        let b = noisy(30, 100.0, sigma, 100 + i as u64);
        let c = noisy(30, level, sigma, 200 + i as u64);
        let r = judge_check(&s, &b, &c);
        assert_eq!(r.verdict.as_str(), want.as_str(), "case {i}: {}", r.reason);
        assert_eq!(r.verdict.cause(), want.cause(), "case {i}: {}", r.reason);
        assert!(r.reason.contains(words), "case {i}: {}", r.reason);
        if want == Verdict::Fail {
            assert!(r.evidence.p_value.unwrap() < 0.01);
        }
    }
    // "Significant but within tolerance" really was significant.
    let r = judge_check(
        &relative(0.05, HigherIsWorse),
        &noisy(30, 100.0, 0.01, 100),
        &noisy(30, 103.0, 0.01, 200),
    );
    assert!(r.evidence.p_value.unwrap() < 1e-4);
}

#[test]
fn unpaired_values_without_timestamps_compare_each_sides_mean() {
    let s = relative(0.05, Direction::HigherIsWorse);
    let mut rng = Rng(5);
    let nan_t = |level: f64, rng: &mut Rng| {
        SideData::Values(
            (0..40)
                .map(|_| Point {
                    t: f64::NAN,
                    v: level * (0.05 * rng.normal()).exp(),
                })
                .collect(),
        )
    };
    let b = nan_t(100.0, &mut rng);
    let c = nan_t(125.0, &mut rng);
    let r = judge_check(&s, &b, &c);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert!(r.evidence.comparison.unwrap().contains(
        "unpaired, 40 vs 40 points (0 of 40 points paired: the timestamps give no step)"
    ));
    let e = r.evidence.effect.unwrap();
    assert!((e.ratio.unwrap() - 1.25).abs() < 0.04, "{e:?}");
    assert!(e.difference > 15.0 && e.difference < 35.0, "{e:?}");
    let i = e.interval.unwrap();
    assert!(i.low < e.ratio.unwrap() && e.ratio.unwrap() < i.high);
}

#[test]
fn values_not_all_positive_compare_differences() {
    let s = relative(0.10, Direction::HigherIsWorse);
    let mut rng = Rng(3);
    let b = series(30, |_| 10.0 + rng.normal());
    let c = series(30, |i| if i == 0 { -1.0 } else { 14.0 + rng.normal() });
    let r = judge_check(&s, &b, &c);
    assert_eq!(r.verdict, Verdict::Fail, "{}", r.reason);
    assert!(
        r.evidence
            .comparison
            .unwrap()
            .starts_with("paired difference by timestamp")
    );
    assert_eq!(
        r.evidence.effect.unwrap().interval.unwrap().scale,
        IntervalScale::Difference
    );
}

#[test]
fn identical_sides_pass() {
    let s = relative(0.05, Direction::Either);
    let b = noisy(30, 100.0, 0.1, 1);
    let r = judge_check(&s, &b, &b.clone());
    assert_eq!(r.verdict, Verdict::Pass);
    assert_eq!(r.evidence.p_value, Some(1.0));
}

/// Paired healthy series: both sides `200 × exp(ε)`, ε an AR(1) with lag-1 correlation `rho`
/// and marginal σ `sigma` (the canary's `canary_sigma`), and with probability `spikes` a point
/// multiplied by a Pareto(1.5) factor.
fn healthy_ar1(
    rng: &mut Rng,
    n: usize,
    rho: f64,
    (sigma, canary_sigma): (f64, f64),
    spikes: f64,
) -> (SideData, SideData) {
    let side = |sd: f64, rng: &mut Rng| {
        let innovation = sd * (1.0 - rho * rho).sqrt();
        let mut e = sd * rng.normal();
        (0..n)
            .map(|i| {
                if i > 0 {
                    e = rho * e + innovation * rng.normal();
                }
                let spike = if rng.uniform() < spikes {
                    rng.uniform().powf(-1.0 / 1.5)
                } else {
                    1.0
                };
                Point {
                    t: 60.0 * i as f64,
                    v: 200.0 * e.exp() * spike,
                }
            })
            .collect::<Vec<_>>()
    };
    let b = side(sigma, rng);
    let c = side(canary_sigma, rng);
    (SideData::Values(b), SideData::Values(c))
}

/// How many of `trials` healthy AR(1) canaries ([`healthy_ar1`]) a zero-tolerance relative
/// check fails.
fn healthy_fails(
    rng: &mut Rng,
    (n, rho): (usize, f64),
    sigmas: (f64, f64),
    spikes: f64,
    trials: usize,
) -> usize {
    let s = spec(
        CheckKind::Relative { tolerance: 0.0 },
        Direction::HigherIsWorse,
        5,
    );
    (0..trials)
        .filter(|_| {
            let (b, c) = healthy_ar1(rng, n, rho, sigmas, spikes);
            judge_check(&s, &b, &c).verdict == Verdict::Fail
        })
        .count()
}

/// Issue 18 point 1: at confidence 0.99 a healthy canary fails a directional check at most
/// 0.5% of the time, also when consecutive minutes are correlated. Before, Wilcoxon's test
/// counted 30 correlated minutes as 30 independent ones and failed ρ = 0.7 about 14% of the
/// time. 300 seeded series per shape; the bound (2%) is far above 0.5% and far below the old
/// rates, so the test is deterministic and still tells the two apart.
#[test]
fn healthy_correlated_minutes_rarely_fail() {
    // (n, rho, sigmas, spike probability)
    let shapes = [
        (30, 0.7, (0.1, 0.1), 0.0),
        (30, 0.8, (0.1, 0.1), 0.0),
        (60, 0.7, (0.1, 0.2), 0.0),
        (15, 0.5, (0.1, 0.1), 0.0),
        (30, 0.7, (0.1, 0.1), 0.05),
    ];
    let mut rng = Rng(18);
    for (n, rho, sigmas, spikes) in shapes {
        let fails = healthy_fails(&mut rng, (n, rho), sigmas, spikes, 300);
        assert!(
            fails <= 6,
            "n {n}, rho {rho}, sigmas {sigmas:?}, spikes {spikes}: {fails} of 300 failed"
        );
    }
}

/// Issue 18 point 1, few points: 10-20 one-minute points with lag-1 correlation 0.7-0.8 failed
/// 1.2-1.8% of healthy canaries at the one-sided 0.5% (the large-sample standard error of ρ̂
/// understates how far it falls short in short windows). Held to at most 1.2% each on 2,000.
#[test]
fn short_correlated_windows_rarely_fail() {
    let mut rng = Rng(1810);
    for shape in [(10, 0.8), (15, 0.8), (20, 0.7)] {
        let fails = healthy_fails(&mut rng, shape, (0.1, 0.1), 0.0, 2000);
        assert!(fails <= 24, "{shape:?}: {fails} of 2000 failed");
    }
}

/// Issue 18 point 1, heavy tails: at ρ 0.7 with a Pareto(1.5) spike in 5% of the minutes, the
/// spikes the guard leaves act as white noise and pull the lag-1 correlation down, and 1.06-1.15%
/// of healthy canaries failed at the one-sided 0.5% (detection benchmark, 8,000 trials). On this
/// model (spikes on both sides, no load wave) 233 of these 20,000 failed (1.17%); with the
/// correlation of a spiky window read from a copy cleaned at 2.5 MADs, 195 (0.98%).
#[test]
fn heavy_tailed_correlated_minutes_hold_their_level() {
    let fails = healthy_fails(&mut Rng(1870), (30, 0.7), (0.1, 0.1), 0.05, 20_000);
    assert!(fails <= 210, "{fails} of 20000 failed");
}

/// Issue 18 point 3: 7 points of a canary 40% slower could not fail (the smallest exact
/// signed-rank p-value, 0.0078, is above 0.005) and so passed. Data that cannot show the
/// canary within its tolerance is now inconclusive, with the bound in the reason.
#[test]
fn seven_points_of_a_slower_canary_are_not_shown_within_tolerance() {
    let s = spec(
        CheckKind::Relative { tolerance: 0.10 },
        Direction::HigherIsWorse,
        5,
    );
    let b = noisy(7, 100.0, 0.25, 71);
    let c = noisy(7, 140.0, 0.25, 72);
    let r = judge_check(&s, &b, &c);
    assert_eq!(
        r.verdict.cause(),
        Some(InconclusiveCause::NotShown),
        "{}",
        r.reason
    );
    assert!(
        r.reason
            .contains("7 points cannot show the canary within +10.0%"),
        "{}",
        r.reason
    );
    assert!(r.reason.contains("the bound is +"), "{}", r.reason);
    let d = r.evidence.decision.unwrap();
    assert_eq!(d.rule, DecisionRule::NotShown);
    assert!(d.bound > 1.1 && (d.limit - 1.1).abs() < 1e-12, "{d:?}");
    assert!(r.evidence.p_value.is_some());
}
