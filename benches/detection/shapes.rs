//! The data shapes of issue 18, one check at a time, next to a reference test that knows the
//! true model: the false-alarm rate on healthy data (with the upper end of its 95% Wilson
//! interval), the detection rate at two effect sizes, how often the check passes (on a bad row,
//! where the canary is worse than the tolerance, every pass is wrong: the target is 0), and how
//! often it passes data that cannot show the tolerance: trials where even the reference's bound,
//! with the true variance, is beyond it. On bad rows that is every pass; on healthy rows it is
//! how much a bound built on an estimated variance claims beyond what the data can show.
//!
//! Every check is judged alone by `judge_check` at confidence 0.99, higher is worse, twice per
//! trial on the same data: with **tolerance 0** for the fail rates (any significant worsening
//! fails, the measurement: a calibrated check fails 0.5% of healthy trials) and with the
//! **rule-like tolerance T** of the row for the pass rates (a healthy canary should pass; a canary
//! worse than T must not). The reference decides "fails" by the same rule (one-sided p < 0.005
//! against no change) with the true variance:
//! - latency (`relative`, paired by timestamp): n one-minute p99 points per side,
//!   `200 ms × load(t) × exp(ε_t) × spike_t × (1 + effect)`, the load wave
//!   `1 + 0.3·sin(2π(t/20 + φ))` shared, ε an AR(1) per side with lag-1 correlation ρ and marginal
//!   σ 0.10 (the canary's 0.20 for "unequal variances"); "heavy tails": with probability 5% a
//!   point is multiplied by a Pareto(1.5) spike; "isolated spikes": one point per side ×3. The
//!   reference is the z-test of the mean log-ratio with its exact AR(1) variance, on the data
//!   without the spikes (it knows where they are). T = 5%.
//! - error counts (`error-rate`): 30 one-minute steps of `rpm × load(t)` requests per side, rate
//!   0.5% × the canary's factor × a log-normal factor per side and minute (σ: overdispersion) ×
//!   one both sides share (σ_shared: bursts); errors binomial. The reference is the exact test
//!   (Fisher's) on the counts deflated by the true dispersion of their difference given the
//!   shared bursts. T = 0.1 percentage points.
//! - trends (`trend`): 30 one-minute points `100 + slope·t + ε_t`, ε an AR(1) of σ 1; the
//!   reference is the z-test of the least-squares slope with its exact AR(1) variance. Limit 0
//!   for the fail rates, T = 0.02 per minute for the pass rates.
//! - absolute statistical (`absolute`, mean, `test = "statistical"`): 30 AR(1) points of σ 10
//!   around the threshold 100 × (1 + effect); the reference is the z-test of the mean with its
//!   exact AR(1) variance. The threshold is the tolerance: healthy means exactly at it.
//! - absolute statistical error rate (`error-rate-absolute`, `test = "statistical"`): 30 steps
//!   of 500 requests, mean rate 0.5% × (1 + effect) with a per-minute log-normal factor; the
//!   reference is the exact binomial test on counts deflated by their true dispersion.

use super::Rng;
use canaryd::judge::{
    Aggregate, CheckKind, CheckSpec, CountPoint, Direction, Point, SideData, ThresholdTest,
    Verdict, judge_check,
};
use canaryd::stats::{Alternative, fisher_exact};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::beta::beta_reg;
use std::f64::consts::PI;

/// One-sided level of a directional check at confidence 0.99.
const ALPHA: f64 = 0.005;

#[derive(Clone, Copy)]
pub enum Shape {
    Latency {
        n: usize,
        rho: f64,
        canary_sigma: f64,
        heavy_tails: bool,
        spikes: bool,
    },
    Errors {
        rpm: f64,
        sigma: f64,
        shared: f64,
    },
    Trend {
        rho: f64,
    },
    AbsoluteMean {
        rho: f64,
    },
    ErrorRateAbsolute {
        sigma: f64,
    },
}

/// One trial's outcomes: canaryd fails at tolerance 0, the reference fails, canaryd passes at
/// the row's tolerance T, canaryd is inconclusive at T, and canaryd passes data that cannot show
/// T (the reference's bound, with the true variance, is beyond it).
#[derive(Default, Clone, Copy)]
struct Outcome {
    fail: bool,
    reference: bool,
    pass: bool,
    inconclusive: bool,
    /// canaryd passes although the reference's bound (true variance) is beyond T.
    unshown_pass: bool,
}

fn load(minute: f64, phase: f64) -> f64 {
    1.0 + 0.3 * (2.0 * PI * (minute / 20.0 + phase)).sin()
}

fn ar1(rng: &mut Rng, n: usize, rho: f64, sigma: f64) -> Vec<f64> {
    let innovation = sigma * (1.0 - rho * rho).sqrt();
    let mut x = sigma * rng.normal();
    (0..n)
        .map(|i| {
            if i > 0 {
                x = rho * x + innovation * rng.normal();
            }
            x
        })
        .collect()
}

/// `w' Σ w` for an AR(1) covariance `var·ρ^|i-j|`.
fn ar1_quadratic(w: &[f64], rho: f64, var: f64) -> f64 {
    let n = w.len();
    let mut s = 0.0;
    for i in 0..n {
        let mut r = 1.0;
        for j in i..n {
            s += if i == j { 1.0 } else { 2.0 } * w[i] * w[j] * r;
            r *= rho;
        }
    }
    var * s
}

fn z_upper() -> f64 {
    Normal::standard().inverse_cdf(1.0 - ALPHA)
}

fn spec(kind: CheckKind, min_samples: usize) -> CheckSpec {
    CheckSpec {
        name: "check".into(),
        kind,
        direction: Direction::HigherIsWorse,
        confidence: 0.99,
        min_samples,
    }
}

fn values(v: &[f64]) -> SideData {
    SideData::Values(
        v.iter()
            .enumerate()
            .map(|(i, &v)| Point {
                t: 60.0 * i as f64,
                v,
            })
            .collect(),
    )
}

fn counts(v: &[(u64, u64)]) -> SideData {
    SideData::Counts(
        v.iter()
            .enumerate()
            .map(|(i, &(e, n))| CountPoint {
                t: 60.0 * i as f64,
                errors: e as f64,
                total: n as f64,
            })
            .collect(),
    )
}

/// What the reference makes of a trial: the worsening's estimate with its true standard error,
/// in units where the row's tolerance is `tolerance`. It fails when `estimate / se > z(0.995)`
/// and can show the tolerance when `estimate + z(0.995)·se <= tolerance` (the end of the 99%
/// interval, as the judge's bound).
#[derive(Clone, Copy)]
struct Reference {
    estimate: f64,
    se: f64,
    tolerance: f64,
}

impl Reference {
    fn fails(&self) -> bool {
        self.estimate / self.se > z_upper()
    }
    fn shows(&self) -> bool {
        self.estimate + z_upper() * self.se <= self.tolerance
    }
}

/// Judge `data` with the kind built for tolerance 0 (fails) and for the row's tolerance (passes).
fn judged(
    kind: impl Fn(f64) -> CheckKind,
    tolerance: f64,
    min_samples: usize,
    b: &SideData,
    c: &SideData,
    (reference, shows): (bool, bool),
) -> Outcome {
    let strict = judge_check(&spec(kind(0.0), min_samples), b, c).verdict;
    let ruled = judge_check(&spec(kind(tolerance), min_samples), b, c).verdict;
    Outcome {
        fail: strict == Verdict::Fail,
        reference,
        pass: ruled == Verdict::Pass,
        inconclusive: matches!(ruled, Verdict::Inconclusive { .. }),
        unshown_pass: ruled == Verdict::Pass && !shows,
    }
}

fn latency(rng: &mut Rng, shape: Shape, effect: f64) -> Outcome {
    let Shape::Latency {
        n,
        rho,
        canary_sigma,
        heavy_tails,
        spikes,
    } = shape
    else {
        unreachable!()
    };
    let phase = rng.uniform();
    // Log-noise per side, and the spikes (log factors) the reference removes.
    let side = |sigma: f64, rng: &mut Rng| -> (Vec<f64>, Vec<f64>) {
        let e = ar1(rng, n, rho, sigma);
        let mut spike = vec![0.0; n];
        if heavy_tails {
            for s in spike.iter_mut() {
                if rng.uniform() < 0.05 {
                    *s = (1.0 - rng.uniform()).powf(-1.0 / 1.5).ln();
                }
            }
        }
        if spikes {
            let at = ((rng.uniform() * n as f64) as usize).min(n - 1);
            spike[at] = 3f64.ln();
        }
        (e, spike)
    };
    let (eb, sb) = side(0.10, rng);
    let (ec, sc) = side(canary_sigma, rng);
    let level = |i: usize| 200.0 * load(i as f64, phase);
    let b: Vec<f64> = (0..n).map(|i| level(i) * (eb[i] + sb[i]).exp()).collect();
    let c: Vec<f64> = (0..n)
        .map(|i| level(i) * (ec[i] + sc[i]).exp() * (1.0 + effect))
        .collect();
    // The reference: the mean log-ratio without the spikes, its exact AR(1) variance.
    let mean = (0..n).map(|i| ec[i] - eb[i]).sum::<f64>() / n as f64 + (1.0 + effect).ln();
    let w = vec![1.0 / n as f64; n];
    let var = ar1_quadratic(&w, rho, 0.01 + canary_sigma * canary_sigma);
    let r = Reference {
        estimate: mean,
        se: var.sqrt(),
        tolerance: 1.05f64.ln(),
    };
    let kind = |tolerance| CheckKind::Relative { tolerance };
    let rs = (r.fails(), r.shows());
    judged(kind, 0.05, 3, &values(&b), &values(&c), rs)
}

/// Binomial(n, p) by inversion, or a normal draw where `(1-p)^n` underflows.
fn binomial(rng: &mut Rng, n: u64, p: f64) -> u64 {
    let p = p.clamp(0.0, 1.0);
    let q = 1.0 - p;
    let mut pmf = q.powf(n as f64);
    if pmf <= 0.0 {
        let mean = n as f64 * p;
        let x = (mean + (mean * q).sqrt() * rng.normal()).round();
        return x.clamp(0.0, n as f64) as u64;
    }
    let (u, mut cdf, mut k) = (rng.uniform(), pmf, 0u64);
    while u > cdf && k < n {
        pmf *= (n - k) as f64 / (k + 1) as f64 * p / q;
        k += 1;
        cdf += pmf;
    }
    k
}

/// The variance of one step's errors and its binomial part, for `n` requests at the rate
/// `base·exp(σZ)`: `n·m(1-m) + n(n-1)·Var(p)` and `n·m(1-m)`, `m` the mean rate.
fn step_variance(n: u64, base: f64, sigma: f64) -> (f64, f64) {
    let (n, s2) = (n as f64, sigma * sigma);
    let m = base * (s2 / 2.0).exp();
    let var_p = base * base * s2.exp() * (s2.exp() - 1.0);
    let binomial = n * m * (1.0 - m);
    (binomial + n * (n - 1.0) * var_p, binomial)
}

/// `counts / phi`, rounded to whole events.
fn deflated(errors: u64, total: u64, phi: f64) -> (u64, u64) {
    let total_d = (total as f64 / phi).round() as u64;
    let errors_d = ((errors as f64 / phi).round() as u64).min(total_d);
    (errors_d, total_d)
}

fn errors(rng: &mut Rng, shape: Shape, factor: f64) -> Outcome {
    let Shape::Errors { rpm, sigma, shared } = shape else {
        unreachable!()
    };
    const STEPS: usize = 30;
    const RATE: f64 = 0.005;
    let phase = rng.uniform();
    let totals: Vec<u64> = (0..STEPS)
        .map(|i| (rpm * load(i as f64, phase)).round() as u64)
        .collect();
    let bursts: Vec<f64> = (0..STEPS).map(|_| (shared * rng.normal()).exp()).collect();
    let mut side = |f: f64| -> Vec<(u64, u64)> {
        totals
            .iter()
            .zip(&bursts)
            .map(|(&n, burst)| {
                let p = RATE * f * burst * (sigma * rng.normal()).exp();
                (binomial(rng, n, p), n)
            })
            .collect()
    };
    let b = side(1.0);
    let c = side(factor);
    // The true dispersion of the difference of the summed errors, given the shared bursts.
    let (mut var, mut bin) = (0.0, 0.0);
    for (&n, burst) in totals.iter().zip(&bursts) {
        for f in [1.0, factor] {
            let (v, b) = step_variance(n, RATE * f * burst, sigma);
            var += v;
            bin += b;
        }
    }
    let phi = (var / bin).max(1.0);
    let sum = |v: &[(u64, u64)]| v.iter().fold((0, 0), |(e, n), s| (e + s.0, n + s.1));
    let ((ce, cn), (be, bn)) = (sum(&c), sum(&b));
    // Can the data show 0.1 pp? The difference of the rates with its true standard error (the
    // two sides have the same totals).
    let n = cn as f64;
    let shows = Reference {
        estimate: (ce as f64 - be as f64) / n,
        se: var.sqrt() / n,
        tolerance: 0.001,
    }
    .shows();
    let ((ce, cn), (be, bn)) = (deflated(ce, cn, phi), deflated(be, bn, phi));
    let reference = fisher_exact([[ce, cn - ce], [be, bn - be]], Alternative::Greater)
        .is_ok_and(|f| f.p_value < ALPHA);
    let kind = |tolerance| CheckKind::ErrorRate { tolerance };
    let rs = (reference, shows);
    judged(kind, 0.001, 100, &counts(&b), &counts(&c), rs)
}

fn trend(rng: &mut Rng, shape: Shape, slope: f64) -> Outcome {
    let Shape::Trend { rho } = shape else {
        unreachable!()
    };
    const N: usize = 30;
    let e = ar1(rng, N, rho, 1.0);
    let c: Vec<f64> = (0..N).map(|i| 100.0 + slope * i as f64 + e[i]).collect();
    // Least-squares slope per minute and its exact AR(1) variance.
    let t_mean = (N as f64 - 1.0) / 2.0;
    let sxx: f64 = (0..N).map(|i| (i as f64 - t_mean).powi(2)).sum();
    let w: Vec<f64> = (0..N).map(|i| (i as f64 - t_mean) / sxx).collect();
    let b: f64 = w.iter().zip(&c).map(|(w, y)| w * y).sum();
    let r = Reference {
        estimate: b,
        se: ar1_quadratic(&w, rho, 1.0).sqrt(),
        tolerance: 0.02,
    };
    let flat = values(&[100.0; N]);
    let kind = |limit| CheckKind::Trend {
        max_slope_per_minute: limit,
    };
    judged(kind, 0.02, 3, &flat, &values(&c), (r.fails(), r.shows()))
}

fn absolute_mean(rng: &mut Rng, shape: Shape, effect: f64) -> Outcome {
    let Shape::AbsoluteMean { rho } = shape else {
        unreachable!()
    };
    const N: usize = 30;
    const THRESHOLD: f64 = 100.0;
    let e = ar1(rng, N, rho, 10.0);
    let c: Vec<f64> = e.iter().map(|e| THRESHOLD * (1.0 + effect) + e).collect();
    let mean = c.iter().sum::<f64>() / N as f64;
    let var = ar1_quadratic(&[1.0 / N as f64; N], rho, 100.0);
    let r = Reference {
        estimate: mean - THRESHOLD,
        se: var.sqrt(),
        tolerance: 0.0,
    };
    // The threshold is the tolerance: both judgements use it.
    let kind = |_| CheckKind::Absolute {
        threshold: THRESHOLD,
        aggregate: Aggregate::Mean,
        test: ThresholdTest::Statistical,
    };
    let none = SideData::Values(Vec::new());
    judged(kind, 0.0, 3, &none, &values(&c), (r.fails(), r.shows()))
}

fn error_rate_absolute(rng: &mut Rng, shape: Shape, effect: f64) -> Outcome {
    let Shape::ErrorRateAbsolute { sigma } = shape else {
        unreachable!()
    };
    const STEPS: usize = 30;
    const N: u64 = 500;
    const THRESHOLD: f64 = 0.005;
    // The log-normal factor's mean is exp(σ²/2): scaled out, so the mean rate is the target.
    let base = THRESHOLD * (1.0 + effect) * (-sigma * sigma / 2.0).exp();
    let c: Vec<(u64, u64)> = (0..STEPS)
        .map(|_| {
            let p = base * (sigma * rng.normal()).exp();
            (binomial(rng, N, p), N)
        })
        .collect();
    let (var, bin) = step_variance(N, base, sigma);
    let phi = (var / bin).max(1.0);
    let (e, n) = c.iter().fold((0, 0), |(e, n), s| (e + s.0, n + s.1));
    let shows = Reference {
        estimate: e as f64 / n as f64 - THRESHOLD,
        se: (STEPS as f64 * var).sqrt() / n as f64,
        tolerance: 0.0,
    }
    .shows();
    let (e, n) = deflated(e, n, phi);
    // P(X ≥ e) for X ~ Binomial(n, threshold).
    let p = if e == 0 {
        1.0
    } else {
        beta_reg(e as f64, (n - e + 1) as f64, THRESHOLD)
    };
    let kind = |_| CheckKind::ErrorRateAbsolute {
        threshold: THRESHOLD,
        test: ThresholdTest::Statistical,
    };
    let none = SideData::Counts(Vec::new());
    judged(kind, 0.0, 100, &none, &counts(&c), (p < ALPHA, shows))
}

fn trial(rng: &mut Rng, shape: Shape, effect: f64) -> Outcome {
    match shape {
        Shape::Latency { .. } => latency(rng, shape, effect),
        Shape::Errors { .. } => errors(rng, shape, effect),
        Shape::Trend { .. } => trend(rng, shape, effect),
        Shape::AbsoluteMean { .. } => absolute_mean(rng, shape, effect),
        Shape::ErrorRateAbsolute { .. } => error_rate_absolute(rng, shape, effect),
    }
}

/// Upper end of the 95% Wilson interval of `k` out of `n`.
fn wilson_upper(k: usize, n: usize) -> f64 {
    let (k, n, z) = (k as f64, n as f64, 1.959_963_984_540_054);
    let p = k / n;
    let centre = p + z * z / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (centre + half) / (1.0 + z * z / n)
}

/// A shape with its healthy effect and its bad effects (the canary's factor for error counts,
/// the slope per minute for trends, the relative worsening otherwise), and the effects' labels.
struct Row {
    name: String,
    shape: Shape,
    healthy: f64,
    bad: Vec<(f64, String)>,
}

fn rows() -> Vec<Row> {
    let lat = |n, rho, canary_sigma, heavy_tails, spikes| Shape::Latency {
        n,
        rho,
        canary_sigma,
        heavy_tails,
        spikes,
    };
    let shifts = |v: &[f64]| -> Vec<(f64, String)> {
        v.iter().map(|s| (*s, format!("+{}%", s * 100.0))).collect()
    };
    let factors =
        |v: &[f64]| -> Vec<(f64, String)> { v.iter().map(|f| (*f, format!("×{f}"))).collect() };
    let mut rows = Vec::new();
    let mut push = |name: String, shape, healthy, bad| {
        rows.push(Row {
            name,
            shape,
            healthy,
            bad,
        })
    };
    for rho in [0.0, 0.3, 0.5, 0.7, 0.8] {
        push(
            format!("p99, ρ {rho}, 30 points"),
            lat(30, rho, 0.1, false, false),
            0.0,
            shifts(&[0.1, 0.2]),
        );
    }
    for n in [10, 60] {
        for rho in [0.0, 0.7] {
            push(
                format!("p99, ρ {rho}, {n} points"),
                lat(n, rho, 0.1, false, false),
                0.0,
                shifts(&[0.1, 0.2]),
            );
        }
    }
    push(
        "p99, ρ 0, 7 points (can it show 5%?)".into(),
        lat(7, 0.0, 0.1, false, false),
        0.0,
        shifts(&[0.2, 0.4]),
    );
    for rho in [0.0, 0.7] {
        push(
            format!("p99, ρ {rho}, heavy tails (Pareto 1.5, 5%)"),
            lat(30, rho, 0.1, true, false),
            0.0,
            shifts(&[0.1, 0.2]),
        );
        push(
            format!("p99, ρ {rho}, one ×3 spike per side"),
            lat(30, rho, 0.1, false, true),
            0.0,
            shifts(&[0.1, 0.2]),
        );
        push(
            format!("p99, ρ {rho}, canary σ 0.2 vs 0.1"),
            lat(30, rho, 0.2, false, false),
            0.0,
            shifts(&[0.1, 0.2]),
        );
    }
    for sigma in [0.0, 0.25, 0.5] {
        push(
            format!("errors 0.5%, 500 rpm, per-side σ {sigma}"),
            Shape::Errors {
                rpm: 500.0,
                sigma,
                shared: 0.0,
            },
            1.0,
            factors(&[1.5, 2.0]),
        );
    }
    push(
        "errors 0.5%, 600 rpm, shared bursts σ 0.3 + per-side σ 0.1".into(),
        Shape::Errors {
            rpm: 600.0,
            sigma: 0.1,
            shared: 0.3,
        },
        1.0,
        factors(&[1.5, 2.0]),
    );
    for sigma in [0.0, 0.5] {
        push(
            format!("errors 0.5%, 40 rpm (low traffic), per-side σ {sigma}"),
            Shape::Errors {
                rpm: 40.0,
                sigma,
                shared: 0.0,
            },
            1.0,
            factors(&[2.0, 4.0]),
        );
    }
    for rho in [0.0, 0.5, 0.8] {
        push(
            format!("trend, ρ {rho}, 30 points (σ 1)"),
            Shape::Trend { rho },
            0.0,
            [0.05, 0.1]
                .iter()
                .map(|s| (*s, format!("slope {s}/min")))
                .collect(),
        );
    }
    for rho in [0.0, 0.7] {
        push(
            format!("absolute mean (statistical), ρ {rho}, 30 points"),
            Shape::AbsoluteMean { rho },
            0.0,
            shifts(&[0.05, 0.1]),
        );
    }
    for sigma in [0.0, 0.5] {
        push(
            format!("error-rate-absolute 0.5% (statistical), 500 rpm, σ {sigma}"),
            Shape::ErrorRateAbsolute { sigma },
            0.0,
            shifts(&[0.3, 0.6]),
        );
    }
    rows
}

/// The table: one line per shape and effect, of the shapes whose name contains `only`.
pub fn run(trials: usize, only: &str) {
    println!(
        "{trials} trials per row; confidence 0.99, higher is worse, one check per analysis; \
         fails at tolerance 0, passes at the row's tolerance T"
    );
    println!();
    println!(
        "| shape | truth | canaryd fails | reference fails | canaryd passes (T) | canaryd inconclusive (T) | passes the data cannot show | target | met |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let (mut met, mut missed) = (0, 0);
    for (r, row) in rows().into_iter().enumerate() {
        if !row.name.contains(only) {
            continue;
        }
        let mut effects = vec![(row.healthy, "healthy".to_string())];
        effects.extend(row.bad);
        for (e, (effect, label)) in effects.into_iter().enumerate() {
            let mut rng = Rng::new(0xD37E_C700 + 16 * r as u64 + e as u64);
            let (mut fail, mut reference, mut pass, mut inconclusive) = (0, 0, 0, 0);
            let mut unshown = 0;
            for _ in 0..trials {
                let o = trial(&mut rng, row.shape, effect);
                fail += o.fail as usize;
                reference += o.reference as usize;
                pass += o.pass as usize;
                inconclusive += o.inconclusive as usize;
                unshown += o.unshown_pass as usize;
            }
            let pct = |k: usize| format!("{:.1}%", 100.0 * k as f64 / trials as f64);
            let healthy = e == 0;
            let (fails, target, ok) = if healthy {
                let rate = fail as f64 / trials as f64;
                let upper = wilson_upper(fail, trials);
                (
                    format!("{:.2}% (≤{:.2}%)", 100.0 * rate, 100.0 * upper),
                    "≤ 1% (upper < 1.5%)",
                    rate <= 0.01 && upper < 0.015,
                )
            } else {
                (
                    pct(fail),
                    "≥ reference − 5; passes 0",
                    fail + trials / 20 >= reference && pass == 0,
                )
            };
            if ok {
                met += 1;
            } else {
                missed += 1;
            }
            println!(
                "| {} | {label} | {fails} | {} | {} | {} | {} | {target} | {} |",
                row.name,
                pct(reference),
                pct(pass),
                pct(inconclusive),
                pct(unshown),
                if ok { "yes" } else { "**no**" }
            );
        }
    }
    println!();
    println!("targets met on {met} rows, missed on {missed}");
}
