//! Sequential benchmark (issue 19 point 2 groundwork): the anytime-valid bound of
//! `canaryd::stats::SequentialMean` against a calibrated fixed-window judge, on series whose
//! points arrive one by one over a stage.
//!
//! Run: `cargo bench --bench sequential --profile dev` (add `-- --trials N`; default 500).
//! Deterministic (fixed seeds); `--profile dev` only reuses the debug build.
//!
//! Data: AR(1) series with lag-1 correlation ρ (0, 0.5, 0.8), unit marginal variance and
//! Student-t(4) innovations (heavy tails), 1,000 points per stage; healthy (mean 0) or shifted
//! by δ marginal standard deviations from the stage's first point (δ 0.5, 1, 2). Every method
//! asks "is the mean shown above 0?" one-sided at α = 1% (a rollback at confidence 0.99):
//! - **sequential**: `SequentialMean::bounds(α).lower > 0`, from the 20th point (`MIN_POINTS`) on;
//! - **fixed window**: the issue-18 long-run bound (`stats::long_run`, Student t) on the last 30
//!   points, the calibrated judge of one analysis, repeated at each look.
//!
//! Each is looked at after every point and after every 10th point. Healthy rows give the
//! time-uniform false-alarm rate: the share of stages with *any* alarm over the 1,000 points
//! (with the upper end of its 95% Wilson interval). Shifted rows give the detection rate within
//! the stage and the median and p95 delay, in points, of the first alarm (over the detected).

use canaryd::sim::Rng;
use canaryd::stats::{MIN_POINTS, SequentialMean, long_run};

const ALPHA: f64 = 0.01;
const POINTS: usize = 1000;
const WINDOW: usize = 30;

fn heavy(rng: &mut Rng) -> f64 {
    let chi2: f64 = (0..4).map(|_| rng.normal().powi(2)).sum();
    rng.normal() / (chi2 / 4.0).sqrt() / 2f64.sqrt()
}

fn ar1(rng: &mut Rng, n: usize, rho: f64, shift: f64) -> Vec<f64> {
    let scale = (1.0 - rho * rho).sqrt();
    let mut x = heavy(rng);
    (0..n)
        .map(|i| {
            if i > 0 {
                x = rho * x + scale * heavy(rng);
            }
            x + shift
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Method {
    Sequential,
    FixedWindow,
}

/// The first point (1-based) at which `method`, looked at every `every` points, alarms.
fn first_alarm(series: &[f64], method: Method, every: usize) -> Option<usize> {
    let mut acc = SequentialMean::new();
    for (i, &x) in series.iter().enumerate() {
        acc.push(x).expect("finite");
        let n = i + 1;
        if n % every != 0 {
            continue;
        }
        let alarm = match method {
            Method::Sequential => n >= MIN_POINTS && acc.bounds(ALPHA).is_ok_and(|b| b.lower > 0.0),
            Method::FixedWindow => {
                n >= WINDOW
                    && long_run(&series[n - WINDOW..n]).is_ok_and(|lr| {
                        lr.mean_estimate()
                            .lower_bound(1.0 - ALPHA)
                            .is_ok_and(|lower| lower > 0.0)
                    })
            }
        };
        if alarm {
            return Some(n);
        }
    }
    None
}

fn wilson_upper(k: usize, n: usize) -> f64 {
    let (z, nf) = (1.959_963_984_540_054, n as f64);
    let p = k as f64 / nf;
    let centre = p + z * z / (2.0 * nf);
    let spread = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    (centre + spread) / (1.0 + z * z / nf)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let trials = args
        .iter()
        .position(|a| a == "--trials")
        .and_then(|i| args.get(i + 1))
        .and_then(|t| t.parse().ok())
        .unwrap_or(500usize);
    println!(
        "{trials} stages of {POINTS} points per row, one-sided α {}%, fixed window {WINDOW} points\n",
        100.0 * ALPHA
    );
    println!(
        "| ρ | shift (σ) | method | looks | false alarms (≤95% upper) or detected | median delay | p95 delay |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (r, rho) in [0.0, 0.5, 0.8].into_iter().enumerate() {
        for (s, shift) in [0.0, 0.5, 1.0, 2.0].into_iter().enumerate() {
            for (method, name) in [
                (Method::Sequential, "sequential"),
                (Method::FixedWindow, "fixed window"),
            ] {
                for every in [1, 10] {
                    let mut rng = Rng::new(0x5E9_0000 + (r * 16 + s) as u64);
                    let mut delays: Vec<usize> = (0..trials)
                        .filter_map(|_| {
                            first_alarm(&ar1(&mut rng, POINTS, rho, shift), method, every)
                        })
                        .collect();
                    delays.sort_unstable();
                    let k = delays.len();
                    let rate = if shift == 0.0 {
                        format!(
                            "{:.1}% (≤{:.1}%)",
                            100.0 * k as f64 / trials as f64,
                            100.0 * wilson_upper(k, trials)
                        )
                    } else {
                        format!("{:.1}%", 100.0 * k as f64 / trials as f64)
                    };
                    let (median, p95) = if shift > 0.0 && k > 0 {
                        (
                            delays[k / 2].to_string(),
                            delays[(k * 95 / 100).min(k - 1)].to_string(),
                        )
                    } else {
                        ("–".into(), "–".into())
                    };
                    println!(
                        "| {rho} | {shift} | {name} | every {every} | {rate} | {median} | {p95} |"
                    );
                }
            }
        }
    }
}
