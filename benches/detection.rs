//! Detection benchmark: false-alarm and detection rates of canaryd's judge on synthetic canary
//! analyses with known truth, in two tables.
//!
//! Run: `cargo bench --bench detection --profile dev` (a few minutes; the figures are
//! deterministic, fixed seeds, and do not depend on the profile: `--profile dev` only reuses the
//! debug build instead of the release build with whole-program LTO). Options after `--`:
//! `--trials N` (default 2000), `--table shapes` or `--table analyses` for one of the two,
//! `--only TEXT` for the shapes whose name contains TEXT.
//!
//! **Shapes** (`detection/shapes.rs`, issue 18): every data shape of the issue — latency with
//! lag-1 autocorrelation 0 to 0.8, heavy tails, isolated spikes, unequal variances, 7 to 60
//! points; error counts with overdispersion, shared bursts and low traffic; trends with
//! autocorrelation; absolute statistical checks — one check at a time, with the false-alarm rate
//! on healthy data, the detection rate at two effect sizes next to a reference test that knows
//! the true model, and how often the check passes a canary worse than its tolerance (its module
//! doc has the models).
//!
//! **Analyses** (the table below, the judge's first benchmark), side by side with a
//! reimplementation of Kayenta's judge:
//!
//! Every trial is one analysis window of 30 one-minute points per side.
use canaryd::judge::{
    CheckKind, CheckSpec, CountPoint, Direction, FamilyControl, Point, SideData, Verdict,
    judge_analysis,
};
use canaryd::stats::hodges_lehmann_ci;
use std::f64::consts::PI;

#[path = "detection/shapes.rs"]
mod shapes;

/// xoshiro256** seeded through splitmix64, with Box-Muller normals.
struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
            spare: None,
        }
    }
    fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }
    /// Uniform in (0, 1).
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        self.spare = Some(r * (2.0 * PI * u2).sin());
        r * (2.0 * PI * u2).cos()
    }
    /// Binomial(n, p) by inversion (n·p is small here).
    fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if p <= 0.0 || n == 0 {
            return 0;
        }
        let p = p.min(1.0);
        let u = self.uniform();
        let q = 1.0 - p;
        let mut pmf = q.powf(n as f64);
        if pmf <= 0.0 {
            // Too many trials for inversion from zero: normal approximation.
            let mean = n as f64 * p;
            let x = (mean + (mean * q).sqrt() * self.normal()).round();
            return x.clamp(0.0, n as f64) as u64;
        }
        let mut cdf = pmf;
        let mut k = 0u64;
        while u > cdf && k < n {
            pmf *= (n - k) as f64 / (k + 1) as f64 * p / q;
            k += 1;
            cdf += pmf;
        }
        k
    }
}

const POINTS: usize = 30;

#[derive(Clone, Copy)]
enum Noise {
    LogNormal,
    HeavyTails,
}

/// One analysis: the checks under test and any further healthy checks judged with them.
#[derive(Clone, Copy, Default)]
struct Scenario {
    /// A p99 check: shared load amplitude, noise, the canary's shift.
    latency: Option<(f64, Noise, f64)>,
    /// How late the canary's points are, in steps (0: the same timestamps as the baseline's).
    lag: f64,
    /// An error-rate check: the canary's factor on the error rate, requests per minute.
    errors: Option<(f64, f64)>,
    /// Further healthy p99 checks (shared load wave, log-normal noise).
    healthy_latency: usize,
    /// Further healthy error-rate checks at 600 rpm.
    healthy_errors: usize,
}

fn load(minute: f64, amplitude: f64, phase: f64) -> f64 {
    1.0 + amplitude * (2.0 * PI * (minute / 20.0 + phase)).sin()
}

fn latency(
    rng: &mut Rng,
    (amplitude, noise, shift): (f64, Noise, f64),
    lag: f64,
) -> (SideData, SideData) {
    let phase = rng.uniform();
    let side = |factor: f64, lag: f64, rng: &mut Rng| -> SideData {
        SideData::Values(
            (0..POINTS)
                .map(|i| {
                    let n = match noise {
                        Noise::LogNormal => (0.10 * rng.normal()).exp(),
                        Noise::HeavyTails => {
                            let spike = if rng.uniform() < 0.05 {
                                rng.uniform().powf(-1.0 / 1.5)
                            } else {
                                1.0
                            };
                            (0.08 * rng.normal()).exp() * spike
                        }
                    };
                    let minute = i as f64 + lag;
                    Point {
                        t: 60.0 * minute,
                        v: 200.0 * factor * load(minute, amplitude, phase) * n,
                    }
                })
                .collect(),
        )
    };
    let b = side(1.0, 0.0, rng);
    let c = side(1.0 + shift, lag, rng);
    (b, c)
}

fn errors(rng: &mut Rng, factor: f64, rpm: f64) -> (SideData, SideData) {
    let phase = rng.uniform();
    let mut b = Vec::with_capacity(POINTS);
    let mut c = Vec::with_capacity(POINTS);
    for i in 0..POINTS {
        let total = (rpm * load(i as f64, 0.3, phase)).round() as u64;
        let burst = (0.3 * rng.normal()).exp();
        for (side, f) in [(&mut b, 1.0), (&mut c, factor)] {
            let rate = 0.005 * f * burst * (0.1 * rng.normal()).exp();
            let errors = rng.binomial(total, rate);
            side.push(CountPoint {
                t: 60.0 * i as f64,
                errors: errors as f64,
                total: total as f64,
            });
        }
    }
    (SideData::Counts(b), SideData::Counts(c))
}

fn relative_spec(confidence: f64) -> CheckSpec {
    CheckSpec {
        name: "p99".into(),
        kind: CheckKind::Relative { tolerance: 0.05 },
        direction: Direction::HigherIsWorse,
        confidence,
        min_samples: 10,
    }
}

fn error_spec(confidence: f64) -> CheckSpec {
    CheckSpec {
        name: "errors".into(),
        kind: CheckKind::ErrorRate { tolerance: 0.001 },
        direction: Direction::HigherIsWorse,
        confidence,
        min_samples: 100,
    }
}

/// Kayenta's MannWhitneyClassifier (confidence 0.98, effect fraction 0.25), direction Increase.
fn kayenta_high(control: &[f64], experiment: &[f64]) -> bool {
    match hodges_lehmann_ci(control, experiment, 0.98) {
        Ok(ci) => ci.low > 0.25 * ci.shift.abs(),
        Err(_) => false,
    }
}

fn values(side: &SideData) -> Vec<f64> {
    match side {
        SideData::Values(p) => p.iter().map(|p| p.v).collect(),
        SideData::Counts(c) => c
            .iter()
            .map(|c| {
                if c.total > 0.0 {
                    c.errors / c.total
                } else {
                    0.0
                }
            })
            .collect(),
    }
}

/// Fail / inconclusive counts of one judge configuration.
#[derive(Default, Clone, Copy)]
struct Count {
    fail: usize,
    inconclusive: usize,
}

impl Count {
    fn add(&mut self, verdicts: impl Iterator<Item = Verdict>) {
        let verdicts: Vec<Verdict> = verdicts.collect();
        if verdicts.contains(&Verdict::Fail) {
            self.fail += 1;
        } else if verdicts
            .iter()
            .any(|v| matches!(v, Verdict::Inconclusive { .. }))
        {
            self.inconclusive += 1;
        }
    }
}

/// The judge configurations of the table: confidence and family control.
const CONFIGS: [(f64, FamilyControl); 3] = [
    (0.99, FamilyControl::Holm),
    (0.99, FamilyControl::PerCheck),
    (0.98, FamilyControl::Holm),
];

/// canaryd in each of [`CONFIGS`], and Kayenta, over the same trials.
#[derive(Default)]
struct Tally {
    canaryd: [Count; CONFIGS.len()],
    kayenta_fail: usize,
}

fn run(scenario: Scenario, trials: usize, seed: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    for _ in 0..trials {
        // Every check's (is latency, baseline, canary) in this trial.
        let mut sides: Vec<(bool, SideData, SideData)> = Vec::new();
        if let Some(latency_check) = scenario.latency {
            let (b, c) = latency(&mut rng, latency_check, scenario.lag);
            sides.push((true, b, c));
        }
        for _ in 0..scenario.healthy_latency {
            let (b, c) = latency(&mut rng, (0.3, Noise::LogNormal, 0.0), 0.0);
            sides.push((true, b, c));
        }
        if let Some((factor, rpm)) = scenario.errors {
            let (b, c) = errors(&mut rng, factor, rpm);
            sides.push((false, b, c));
        }
        for _ in 0..scenario.healthy_errors {
            let (b, c) = errors(&mut rng, 1.0, 600.0);
            sides.push((false, b, c));
        }
        if sides
            .iter()
            .any(|(_, b, c)| kayenta_high(&values(b), &values(c)))
        {
            tally.kayenta_fail += 1;
        }
        for (count, (confidence, control)) in tally.canaryd.iter_mut().zip(CONFIGS) {
            let (rel, errs) = (relative_spec(confidence), error_spec(confidence));
            let checks: Vec<(&CheckSpec, &SideData, &SideData)> = sides
                .iter()
                .map(|(is_latency, b, c)| (if *is_latency { &rel } else { &errs }, b, c))
                .collect();
            count.add(
                judge_analysis(&checks, control)
                    .into_iter()
                    .map(|r| r.verdict),
            );
        }
    }
    tally
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; only `--trials N`, `--table NAME` and `--only TEXT`
    // are ours.
    let trials = args
        .iter()
        .position(|a| a == "--trials")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000usize);
    let table = args
        .iter()
        .position(|a| a == "--table")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map_or("", String::as_str);
    if table != Some("analyses") {
        shapes::run(trials, only);
        println!();
    }
    if table != Some("shapes") {
        analyses(trials);
    }
}

/// The table of whole analyses, next to Kayenta.
fn analyses(trials: usize) {
    use Noise::*;
    let lat = |load, noise, shift| Scenario {
        latency: Some((load, noise, shift)),
        ..Scenario::default()
    };
    // The canary's points 0.3 of a step after the baseline's.
    let late = |s: Scenario| Scenario { lag: 0.3, ..s };
    let err = |factor, rpm| Scenario {
        errors: Some((factor, rpm)),
        ..Scenario::default()
    };
    // The check under test next to `latency` healthy p99 checks and `errors` healthy error checks.
    let among = |mut s: Scenario, latency: usize, errors: usize| {
        s.healthy_latency = latency;
        s.healthy_errors = errors;
        s
    };
    let healthy_pair = Scenario {
        latency: Some((0.3, LogNormal, 0.0)),
        errors: Some((1.0, 500.0)),
        ..Scenario::default()
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, Scenario, bool, &str)> = vec![
        ("healthy p99, shared load wave", lat(0.3, LogNormal, 0.0), false, "≤ 1%"),
        ("healthy p99, no shared load", lat(0.0, LogNormal, 0.0), false, "≤ 1%"),
        ("healthy p99, heavy tails + load", lat(0.3, HeavyTails, 0.0), false, "≤ 1%"),
        ("healthy error rate 0.5%, 500 rpm", err(1.0, 500.0), false, "≤ 1%"),
        ("healthy error rate 0.5%, 1000 rpm", err(1.0, 1000.0), false, "≤ 1%"),
        ("healthy analysis (p99 + errors)", healthy_pair, false, "≤ 1%"),
        ("p99 +5%, shared load", lat(0.3, LogNormal, 0.05), true, "-"),
        ("p99 +10%, shared load", lat(0.3, LogNormal, 0.10), true, "≥ 65%"),
        ("p99 +20%, shared load", lat(0.3, LogNormal, 0.20), true, "≥ 99%"),
        ("p99 +50%, shared load", lat(0.3, LogNormal, 0.50), true, "-"),
        ("healthy p99, shared load, canary 0.3 step late", late(lat(0.3, LogNormal, 0.0)), false, "≤ 1%"),
        ("p99 +10%, shared load, canary 0.3 step late", late(lat(0.3, LogNormal, 0.10)), true, "≥ 65%"),
        ("p99 +20%, shared load, canary 0.3 step late", late(lat(0.3, LogNormal, 0.20)), true, "≥ 99%"),
        ("p99 +10%, no shared load", lat(0.0, LogNormal, 0.10), true, "≥ 65%"),
        ("p99 +20%, no shared load", lat(0.0, LogNormal, 0.20), true, "≥ 99%"),
        ("p99 +10%, heavy tails + load", lat(0.3, HeavyTails, 0.10), true, "≥ 65%"),
        ("p99 +20%, heavy tails + load", lat(0.3, HeavyTails, 0.20), true, "≥ 99%"),
        ("errors ×1.5, 500 rpm", err(1.5, 500.0), true, "≥ 60%"),
        ("errors ×2, 500 rpm", err(2.0, 500.0), true, "≥ 99%"),
        ("errors ×3, 500 rpm", err(3.0, 500.0), true, "-"),
        // 600 rpm is where the Kayenta reimplementation catches ×1.5 about as often as the
        // issue's figure for Kayenta (23%): the traffic level the targets were stated for.
        ("healthy error rate 0.5%, 600 rpm", err(1.0, 600.0), false, "≤ 1%"),
        ("errors ×1.5, 600 rpm", err(1.5, 600.0), true, "≥ 60%"),
        ("errors ×2, 600 rpm", err(2.0, 600.0), true, "≥ 99%"),
        ("errors ×1.5, 1000 rpm", err(1.5, 1000.0), true, "≥ 60%"),
        ("errors ×2, 1000 rpm", err(2.0, 1000.0), true, "≥ 99%"),
        // Whole analyses: the check under test among healthy ones (errors at 600 rpm).
        ("healthy analysis of 20 checks (10 p99 + 10 errors)", among(Scenario::default(), 10, 10), false, "≤ 1%"),
        ("p99 +10% in a 2-check analysis (+ errors)", among(lat(0.3, LogNormal, 0.10), 0, 1), true, "≥ 65%"),
        ("errors ×1.5, 600 rpm in a 2-check analysis (+ p99)", among(err(1.5, 600.0), 1, 0), true, "≥ 60%"),
        ("p99 +10% in a 20-check analysis", among(lat(0.3, LogNormal, 0.10), 9, 10), true, "≥ 65%"),
        ("p99 +20% in a 20-check analysis", among(lat(0.3, LogNormal, 0.20), 9, 10), true, "≥ 99%"),
        ("errors ×1.5, 600 rpm in a 20-check analysis", among(err(1.5, 600.0), 10, 9), true, "≥ 60%"),
        ("errors ×2, 600 rpm in a 20-check analysis", among(err(2.0, 600.0), 10, 9), true, "≥ 99%"),
    ];
    println!("{trials} trials per scenario, {POINTS} one-minute points per side");
    println!();
    println!(
        "| scenario | truth | canaryd fails (0.99, Holm) | canaryd fails (0.99, per check) | canaryd inconclusive (0.99, Holm) | canaryd fails (0.98, Holm) | Kayenta fails | target |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, (name, scenario, bad, target)) in rows.into_iter().enumerate() {
        let t = run(scenario, trials, 0x5EED_0000 + i as u64);
        let pct = |n: usize| format!("{:.1}%", 100.0 * n as f64 / trials as f64);
        let [holm, per_check, holm_98] = t.canaryd;
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} | {target} |",
            if bad { "bad" } else { "healthy" },
            pct(holm.fail),
            pct(per_check.fail),
            pct(holm.inconclusive),
            pct(holm_98.fail),
            pct(t.kayenta_fail)
        );
    }
}
