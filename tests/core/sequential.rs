//! The anytime-valid bounds of `stats::sequential` on seeded Monte-Carlo series, looked at after
//! **every** point: on healthy series (AR(1) with ρ 0, 0.5, 0.8 and heavy-tailed innovations,
//! overdispersed error counts) the bound must ever exclude the truth in at most α of the series;
//! a gross shift must be caught within a few points; and the motivating bug, a fixed-window test
//! looked at repeatedly, must be shown to break that guarantee on the same kind of data.

use canaryd::sim::Rng;
use canaryd::stats::{MIN_POINTS, MIN_POINTS_WITH_PRIOR, SequentialMean, SequentialRates, radius};
use statrs::distribution::{ContinuousCDF, StudentsT};

const ALPHA: f64 = 0.05;
const SERIES: usize = 400;
const POINTS: usize = 1000;

/// Student's t with 4 degrees of freedom scaled to unit variance: heavy tails (infinite
/// fourth moment) but a CLT.
fn heavy(rng: &mut Rng) -> f64 {
    let chi2: f64 = (0..4).map(|_| rng.normal().powi(2)).sum();
    rng.normal() / (chi2 / 4.0).sqrt() / 2f64.sqrt()
}

/// A stationary AR(1) with unit marginal variance and heavy-tailed innovations.
fn ar1(rng: &mut Rng, n: usize, rho: f64) -> Vec<f64> {
    let scale = (1.0 - rho * rho).sqrt();
    let mut x = heavy(rng);
    (0..n)
        .map(|i| {
            if i > 0 {
                x = rho * x + scale * heavy(rng);
            }
            x
        })
        .collect()
}

/// The first point (1-based) at which the lower bound exceeds `threshold`, looking at every
/// point from `MIN_POINTS` on.
fn first_lower_above(series: &[f64], threshold: f64) -> Option<usize> {
    let mut acc = SequentialMean::new();
    for (i, &x) in series.iter().enumerate() {
        acc.push(x).unwrap();
        if acc.len() >= MIN_POINTS && acc.bounds(ALPHA).unwrap().lower > threshold {
            return Some(i + 1);
        }
    }
    None
}

/// The share of healthy series (mean 0) whose lower bound ever rises above 0.
fn ever_excludes(rho: f64, seed: u64) -> f64 {
    let mut rng = Rng::new(seed);
    let crossed = (0..SERIES)
        .filter(|_| first_lower_above(&ar1(&mut rng, POINTS, rho), 0.0).is_some())
        .count();
    crossed as f64 / SERIES as f64
}

#[test]
fn a_healthy_series_is_ever_excluded_at_most_alpha_of_the_time_at_every_correlation() {
    // 400 series: the standard error of a 5% rate is 1.1%, so a bound that held only at a
    // fixed n (the fixed-window test below reaches 30%+) could not pass by luck.
    let rates: Vec<(f64, f64)> = [0.0, 0.5, 0.8]
        .iter()
        .map(|&rho| (rho, ever_excludes(rho, 19_000 + (rho * 10.0) as u64)))
        .collect();
    for &(rho, rate) in &rates {
        assert!(
            rate <= ALPHA,
            "ρ {rho}: the truth was excluded in {:.1}% of healthy series (α {:.0}%); all: {rates:?}",
            100.0 * rate,
            100.0 * ALPHA
        );
    }
}

/// With the dependence of the 20 points before the stage (`SequentialMean::with_prior`: the
/// previous stage's or the warm-up's, at another level) a bound is given from the 10th point of
/// the stage instead of the 20th. A healthy series must still be ever excluded in at most α of
/// the stages, looked at after every point from the 10th, at every correlation: the points
/// before the stage are what keeps ten correlated points from looking independent.
#[test]
fn with_the_dependence_before_the_stage_a_bound_from_ten_points_keeps_its_guarantee() {
    let rates: Vec<(f64, f64)> = [0.0, 0.5, 0.8]
        .iter()
        .map(|&rho| {
            let mut rng = Rng::new(31_000 + (rho * 10.0) as u64);
            let crossed = (0..SERIES)
                .filter(|_| {
                    let series = ar1(&mut rng, 20 + POINTS, rho);
                    let mut before = SequentialMean::new();
                    for x in &series[..20] {
                        // Another level before the stage: only how the points hang together counts.
                        before.push(x + 3.0).unwrap();
                    }
                    let mut acc = SequentialMean::with_prior(before.dependence());
                    assert_eq!(acc.needed(), MIN_POINTS_WITH_PRIOR);
                    series[20..].iter().any(|&x| {
                        acc.push(x).unwrap();
                        acc.len() >= MIN_POINTS_WITH_PRIOR && acc.bounds(ALPHA).unwrap().lower > 0.0
                    })
                })
                .count();
            (rho, crossed as f64 / SERIES as f64)
        })
        .collect();
    for &(rho, rate) in &rates {
        assert!(
            rate <= ALPHA,
            "ρ {rho}: excluded in {:.1}% of healthy stages (α {:.0}%); all: {rates:?}",
            100.0 * rate,
            100.0 * ALPHA
        );
    }
}

/// The pass decision's guarantee (issue 19 point 3; `judge::staged` passes on the upper bound at
/// the check's own significance, not split over the stages): a canary exactly at the tolerance
/// (mean 0 here, the tolerance 0) must ever be shown within it in at most α of the stages,
/// looked at after every point. Promotion needs every stage passed, so this bounds the chance
/// of promoting a canary that is worse than its tolerance in some stage.
#[test]
fn a_canary_at_the_tolerance_is_ever_passed_at_most_alpha_of_the_time() {
    let rates: Vec<(f64, f64)> = [0.0, 0.5, 0.8]
        .iter()
        .map(|&rho| {
            let mut rng = Rng::new(29_000 + (rho * 10.0) as u64);
            let passed = (0..SERIES)
                .filter(|_| {
                    let mut acc = SequentialMean::new();
                    ar1(&mut rng, POINTS, rho).into_iter().any(|x| {
                        acc.push(x).unwrap();
                        acc.len() >= MIN_POINTS && acc.bounds(ALPHA).unwrap().upper <= 0.0
                    })
                })
                .count();
            (rho, passed as f64 / SERIES as f64)
        })
        .collect();
    for &(rho, rate) in &rates {
        assert!(
            rate <= ALPHA,
            "ρ {rho}: a canary at the tolerance passed {:.1}% of stages (α {:.0}%); all: {rates:?}",
            100.0 * rate,
            100.0 * ALPHA
        );
    }
}

#[test]
fn a_fixed_window_test_looked_at_every_point_breaks_the_guarantee() {
    // The motivating bug: a one-sided t-test at level α on everything seen so far, repeated at
    // every point, alarms on healthy independent data far more often than α.
    let mut rng = Rng::new(7);
    let crossed = (0..SERIES)
        .filter(|_| {
            let series = ar1(&mut rng, POINTS, 0.0);
            let (mut sum, mut sum_sq) = (0.0, 0.0);
            series.iter().enumerate().any(|(i, &x)| {
                sum += x;
                sum_sq += x * x;
                let n = (i + 1) as f64;
                if i + 1 < MIN_POINTS {
                    return false;
                }
                let mean = sum / n;
                let sd = ((sum_sq - n * mean * mean) / (n - 1.0)).sqrt();
                let t = StudentsT::new(0.0, 1.0, n - 1.0).unwrap();
                mean - t.inverse_cdf(1.0 - ALPHA) * sd / n.sqrt() > 0.0
            })
        })
        .count();
    let rate = crossed as f64 / SERIES as f64;
    assert!(
        rate > 3.0 * ALPHA,
        "the repeated fixed-window test alarmed on {:.1}% of healthy series",
        100.0 * rate
    );
}

#[test]
fn a_gross_shift_is_caught_within_a_few_points() {
    // A shift of two marginal standard deviations from the stage's start (a p99 twice the
    // baseline's is seven, at the 10% log-noise of benches/calibration.rs): every series is
    // caught; on independent noise at the first look a bound is given (`MIN_POINTS`), and the
    // price of correlation (fewer effective points, a wider early bound) is stated for ρ 0.5.
    for (rho, most) in [(0.0, MIN_POINTS), (0.5, 40)] {
        let mut rng = Rng::new(11);
        let mut delays: Vec<usize> = (0..200)
            .map(|_| {
                let series: Vec<f64> = ar1(&mut rng, 400, rho).iter().map(|x| x + 2.0).collect();
                first_lower_above(&series, 0.0).expect("a shift of two σ is caught in 400 points")
            })
            .collect();
        delays.sort_unstable();
        let median = delays[delays.len() / 2];
        assert!(median <= most, "ρ {rho}: median delay {median} points");
    }
}

/// Binomial(n, p) by a normal approximation with continuity, clamped (n·p ≥ 3 here).
fn binomial(rng: &mut Rng, n: u64, p: f64) -> u64 {
    let mean = n as f64 * p;
    let x = (mean + (mean * (1.0 - p)).sqrt() * rng.normal()).round();
    x.clamp(0.0, n as f64) as u64
}

/// Healthy overdispersed counts: 600 requests per step and side, error rate 2% times a
/// log-normal factor (σ 0.5) drawn per side and step, persisting with lag-1 correlation 0.5,
/// far more variable than binomial. Returns, per series, whether the dispersion-aware bound and
/// a bound with the binomial variance alone (what a count test assumes) ever excluded 0.
fn overdispersed_crossings(seed: u64) -> (usize, usize) {
    overdispersed_crossings_after(seed, 0)
}

/// [`overdispersed_crossings`] with `before` steps of the same process before the stage, whose
/// dependence the stage's estimate pools (`SequentialRates::with_prior`), looked at from the
/// step its bound first decides at.
fn overdispersed_crossings_after(seed: u64, before: usize) -> (usize, usize) {
    let mut rng = Rng::new(seed);
    let (mut aware, mut binomial_only) = (0, 0);
    for _ in 0..SERIES {
        let (mut zc, mut zb) = (rng.normal(), rng.normal());
        let mut step_counts = |rng: &mut Rng| {
            zc = 0.5 * zc + 0.75f64.sqrt() * rng.normal();
            zb = 0.5 * zb + 0.75f64.sqrt() * rng.normal();
            let pc = 0.02 * (0.5 * zc - 0.125).exp();
            let pb = 0.02 * (0.5 * zb - 0.125).exp();
            (binomial(rng, 600, pc), binomial(rng, 600, pb))
        };
        let mut prior = SequentialRates::new(1.0).unwrap();
        for _ in 0..before {
            let (ec, eb) = step_counts(&mut rng);
            prior.push((ec, 600), (eb, 600)).unwrap();
        }
        let mut rates = SequentialRates::with_prior(1.0, prior.dependence()).unwrap();
        let needed = rates.needed();
        let (mut aware_hit, mut binomial_hit) = (false, false);
        let (mut sum, mut errors) = (0.0, [0u64; 2]);
        for step in 0..POINTS {
            let (ec, eb) = step_counts(&mut rng);
            rates.push((ec, 600), (eb, 600)).unwrap();
            sum += (ec as f64 - eb as f64) / 600.0;
            errors[0] += ec;
            errors[1] += eb;
            let n = step + 1;
            if n < needed {
                continue;
            }
            aware_hit |= rates.bounds(ALPHA).unwrap().lower > 0.0;
            let sigma = errors
                .iter()
                .map(|&e| {
                    let p = e as f64 / (600 * n) as f64;
                    p * (1.0 - p) / 600.0
                })
                .sum::<f64>()
                .sqrt();
            binomial_hit |= sum / n as f64 - radius(n, ALPHA).unwrap() * sigma > 0.0;
            if aware_hit && binomial_hit {
                break;
            }
        }
        aware += usize::from(aware_hit);
        binomial_only += usize::from(binomial_hit);
    }
    (aware, binomial_only)
}

/// The error counts' bound with the dependence of the 20 steps before the stage decides from
/// the 10th step, and still excludes healthy overdispersed counts in at most α of the stages.
#[test]
fn overdispersed_counts_with_the_steps_before_the_stage_keep_the_guarantee_from_ten_steps() {
    let (aware, _) = overdispersed_crossings_after(37, 20);
    let rate = aware as f64 / SERIES as f64;
    assert!(
        rate <= ALPHA,
        "excluded in {:.1}% of healthy series",
        100.0 * rate
    );
}

#[test]
fn overdispersed_healthy_error_counts_are_ever_excluded_at_most_alpha_of_the_time() {
    let (aware, binomial_only) = overdispersed_crossings(23);
    let rate = |k: usize| k as f64 / SERIES as f64;
    assert!(
        rate(aware) <= ALPHA,
        "excluded in {:.1}% of healthy series",
        100.0 * rate(aware)
    );
    // The same boundary with the binomial variance alone breaks the guarantee: the dispersion
    // term is what keeps it.
    assert!(
        rate(binomial_only) > 2.0 * ALPHA,
        "binomial-only bound excluded in {:.1}%",
        100.0 * rate(binomial_only)
    );
}
