//! The long-run (HAC) variance of a series' mean, for points that are not independent: a p99
//! series drifts with load and GC for minutes, so consecutive points are correlated and `s²/n`
//! understates the variance of their mean (lag-1 correlation 0.7 makes it 5.7 times too small).
//!
//! It owns the Newey-West estimator (Bartlett kernel) at a given lag, the Newey-West (1994)
//! automatic lag, and the automatic estimator [`long_run`] built from them, with the effective
//! sample size and degrees of freedom it implies; and the paired and unpaired differences of two
//! series. It assumes the series is stationary (its mean does not move within the window; a
//! trend is the trend check's business) and that its dependence is short-memory and mostly
//! captured by an AR(1) (the usual shape of per-minute latency noise). It must not drop
//! non-finite points or decide what a difference means: those are the judge's.
//!
//! **Choice of estimator.** The automatic estimator prewhitens with an AR(1) (Andrews and Monahan
//! 1992, as R's `sandwich::NeweyWest` does by default), picks the Newey-West lag of the residuals
//! by the nonparametric Newey-West (1994) rule (as statsmodels' KPSS: pilot lag `⌊n^{2/9}⌋`,
//! bandwidth `1.1447·(ŝ₁/ŝ₀)^{2/3}·n^{1/3}`) and recolours by `1/(1-ρ)²`. Newey-West 1994 rather
//! than Andrews (1991) because it assumes no model for the residuals (Andrews's plug-in assumes
//! an AR(1), which after prewhitening the residuals are not); prewhitening because with the 10-60
//! points of a canary window no kernel estimate alone gets near the truth under strong dependence
//! (at ρ = 0.7 the Bartlett weights of a 3-7 lag window recover 2.7-3.6 of the true 5.7), while
//! the AR(1) factor carries most of it. The AR(1) coefficient is bias-corrected (Marriott-Pope:
//! `ρ̂ + (1 + 3ρ̂)/n`) and clamped to ±0.97; the result is floored at the i.i.d. variance `s²`
//! (never claim more information than independent points: negative correlation is rare in these
//! metrics and ignoring it is conservative). The degrees of freedom, for Student-t bounds, add
//! two relative variances Satterthwaite-style, `1/df = 4ρ⁺/(n(1-ρ⁺)) + (L+1)/(1.5n)`, within
//! `[1, n-1]`: the Bartlett estimate's (`(4/3)(L+1)/n`, halved as a chi-square's `2/df`) and a
//! term for the recolouring factor evaluated at `ρ⁺`, ρ 1.5 standard errors up at 20 points or
//! fewer, none from 60 (`Var ρ̂ ≈ (1-ρ²)/n`), because false alarms come from the windows whose
//! `ρ̂` falls short of the true ρ, more often the shorter the window. Residuals of a fitted line
//! ([`long_run_detrended`], the trend check) take the bias correction `(2 + 4ρ̂)/n`. The form of
//! that term was chosen by simulation over AR(1) series (n 10-60, ρ 0-0.8) against
//! `2(1+ρ)/(n(1-ρ))` (the delta method's at ρ̂, which held the level too but caught +10% at
//! ρ = 0 and 30 points 45% of the time instead of 52%), the step by `python3
//! bench/longrun_tradeoff.py`, which also shows the price: no step that holds 1% at ρ 0.8 comes
//! near a test that knows ρ and σ (+10% at 30 points, ρ 0: about 51% against 87%; the i.i.d.
//! t-test's 81% comes with 2.7% false alarms at ρ 0.3 and 20% at ρ 0.8). The detection
//! benchmark (`cargo bench --bench detection --profile dev -- --table shapes`) measures the
//! judge built on it, with spikes, heavy tails and unequal variances.

use super::estimate::{EstimateError, MeanEstimate, check_series, checked, difference};

/// Largest AR(1) coefficient used for prewhitening: at 0.97 the recolouring factor is 1,111.
const RHO_CLAMP: f64 = 0.97;

/// The long-run variance of one series and what it implies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongRun {
    pub n: usize,
    pub mean: f64,
    /// Sample variance `s²` (divisor n - 1).
    pub variance: f64,
    /// AR(1) coefficient used for prewhitening (bias-corrected, clamped).
    pub rho: f64,
    /// Newey-West lag used on the prewhitened residuals.
    pub lag: usize,
    /// `σ²_LR`: `n · Var(mean)`; at least `variance`.
    pub long_run_variance: f64,
    /// `n · s² / σ²_LR`: how many independent points the series is worth (at most n; below 1
    /// when the window is one slow drift).
    pub effective_n: f64,
    /// Degrees of freedom of the variance of the mean, for Student-t bounds.
    pub df: f64,
    /// The degrees of freedom the AR(1) factor's uncertainty alone leaves (`df` without the
    /// Newey-West term): what a caller that does not apply the variance still owes to a ρ̂
    /// that may fall short of the true ρ.
    pub dependence_df: f64,
}

impl LongRun {
    /// The mean with the variance of the mean and its degrees of freedom.
    pub fn mean_estimate(&self) -> MeanEstimate {
        MeanEstimate {
            estimate: self.mean,
            variance: self.long_run_variance / self.n as f64,
            df: self.df,
        }
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// `Σ x_t x_{t-j} / n` of an already centred series.
fn autocovariance(xc: &[f64], j: usize) -> f64 {
    let n = xc.len();
    xc[j..]
        .iter()
        .zip(&xc[..n - j])
        .map(|(a, b)| a * b)
        .sum::<f64>()
        / n as f64
}

fn centred(x: &[f64]) -> Vec<f64> {
    let m = mean(x);
    x.iter().map(|v| v - m).collect()
}

/// Newey-West long-run variance of `x` around its mean at `lag` (Bartlett weights
/// `1 - j/(lag+1)`, autocovariances with divisor n, no small-sample correction); the variance of
/// the mean is this divided by `n`, as statsmodels' `OLS(x, 1).fit(cov_type='HAC')` gives it.
/// A lag of `n` or more is cut to `n - 1`.
pub fn newey_west(x: &[f64], lag: usize) -> Result<f64, EstimateError> {
    check_series("series", x)?;
    Ok(bartlett(&centred(x), lag))
}

fn bartlett(xc: &[f64], lag: usize) -> f64 {
    let lag = lag.min(xc.len() - 1);
    let mut s = autocovariance(xc, 0);
    for j in 1..=lag {
        s += 2.0 * (1.0 - j as f64 / (lag + 1) as f64) * autocovariance(xc, j);
    }
    s
}

/// The Newey-West (1994) lag for the Bartlett kernel, as statsmodels' `kpss(nlags='auto')`
/// computes it: pilot lag `⌊n^{2/9}⌋`, `ŝ₀ = γ₀ + 2Σγ_j`, `ŝ₁ = 2Σ jγ_j`, lag
/// `⌊1.1447·(ŝ₁/ŝ₀)^{2/3}·n^{1/3}⌋`, at most `n - 1`. Where the pilot `ŝ₀` is not positive (a
/// strongly negatively correlated series) the lag is 0.
pub fn newey_west_1994_lag(x: &[f64]) -> Result<usize, EstimateError> {
    check_series("series", x)?;
    Ok(nw1994_lag(&centred(x)))
}

fn nw1994_lag(xc: &[f64]) -> usize {
    let n = xc.len();
    let nf = n as f64;
    let pilot = (nf.powf(2.0 / 9.0) as usize).min(n - 1);
    let g0 = autocovariance(xc, 0);
    let (mut s0, mut s1) = (g0, 0.0);
    for j in 1..=pilot {
        let g = 2.0 * autocovariance(xc, j);
        s0 += g;
        s1 += j as f64 * g;
    }
    if s0 <= 1e-12 * g0 {
        return 0;
    }
    let s = s1 / s0;
    let bandwidth = 1.1447 * (s * s).powf(1.0 / 3.0) * nf.powf(1.0 / 3.0);
    // `as` saturates, and the cut to n - 1 bounds the work.
    (bandwidth as usize).min(n - 1)
}

/// The automatic long-run variance of `x` (see the module doc for the recipe and its choice).
/// At least 3 finite points that are not all equal.
pub fn long_run(x: &[f64]) -> Result<LongRun, EstimateError> {
    estimate(x, x, Removed::Mean)
}

/// [`long_run`] with the AR(1) coefficient estimated on `dependence`, the same points cleaned
/// harder of spikes (same length); everything else on `x`.
pub fn long_run_dependence_from(x: &[f64], dependence: &[f64]) -> Result<LongRun, EstimateError> {
    if dependence.len() != x.len() {
        return Err(EstimateError::LengthMismatch {
            canary: x.len(),
            baseline: dependence.len(),
        });
    }
    check_series("dependence", dependence)?;
    estimate(x, dependence, Removed::Mean)
}

/// [`long_run`] of residuals from a fitted line: removing the slope too biases ρ̂ further down,
/// so the bias correction is `(2 + 4ρ̂)/n` instead of `(1 + 3ρ̂)/n`.
pub fn long_run_detrended(residuals: &[f64]) -> Result<LongRun, EstimateError> {
    estimate(residuals, residuals, Removed::Line)
}

/// What was fitted to the series before its dependence is estimated.
#[derive(Clone, Copy)]
enum Removed {
    Mean,
    Line,
}

fn estimate(x: &[f64], dependence: &[f64], removed: Removed) -> Result<LongRun, EstimateError> {
    check_series("series", x)?;
    let n = x.len();
    let nf = n as f64;
    let m = mean(x);
    let xc: Vec<f64> = x.iter().map(|v| v - m).collect();
    let variance = xc.iter().map(|v| v * v).sum::<f64>() / (nf - 1.0);
    if !(m.is_finite() && variance.is_finite()) {
        return Err(EstimateError::NonFinite {
            what: "series variance",
        });
    }
    if variance / nf <= 0.0 {
        // Values so close that their squared deviations (or the variance of their mean)
        // underflow.
        return Err(EstimateError::NoVariation { what: "series" });
    }
    // AR(1) by least squares of d_t on d_{t-1} (`d` the series or its cleaned copy), both centred
    // on the whole mean. A series that varies gives a positive denominator (a centred series that
    // is zero but for its last point is all zero); a copy that does not gives none, and then no
    // dependence is read from it.
    let dc = centred(dependence);
    let num: f64 = dc[1..].iter().zip(&dc[..n - 1]).map(|(a, b)| a * b).sum();
    let den: f64 = dc[..n - 1].iter().map(|b| b * b).sum();
    let rho_hat = if den > 0.0 { num / den } else { 0.0 };
    let bias = match removed {
        Removed::Mean => 1.0 + 3.0 * rho_hat,
        Removed::Line => 2.0 + 4.0 * rho_hat,
    };
    let rho = (rho_hat + bias / nf).clamp(-RHO_CLAMP, RHO_CLAMP);
    let e: Vec<f64> = xc[1..]
        .iter()
        .zip(&xc[..n - 1])
        .map(|(a, b)| a - rho * b)
        .collect();
    let ec = centred(&e);
    let lag = nw1994_lag(&ec);
    let recoloured = bartlett(&ec, lag) / ((1.0 - rho) * (1.0 - rho));
    if !recoloured.is_finite() {
        return Err(EstimateError::NonFinite {
            what: "long-run variance",
        });
    }
    let long_run_variance = recoloured.max(variance);
    // ρ some standard errors up (Var ρ̂ ≈ (1-ρ²)/n, [`short_window_step`]): false alarms come
    // from the windows whose ρ̂ falls short of the true ρ, so the degrees of freedom are judged
    // at a ρ that likely covers it.
    let se = ((1.0 - rho * rho).max(0.0) / nf).sqrt();
    let rho_up = (rho.max(0.0) + short_window_step(n) * se).min(RHO_CLAMP);
    let factor_term = 4.0 * rho_up / (nf * (1.0 - rho_up));
    let inverse = factor_term + (lag + 1) as f64 / (1.5 * nf);
    Ok(LongRun {
        n,
        mean: m,
        variance,
        rho,
        lag,
        long_run_variance,
        effective_n: (nf * (variance / long_run_variance)).min(nf),
        df: (1.0 / inverse).min(nf - 1.0).max(1.0),
        dependence_df: (1.0 / factor_term).min(nf - 1.0).max(1.0),
    })
}

/// How many standard errors of ρ̂ the degrees of freedom step up: 1.5 up to 20 points, falling
/// linearly to 0 at 60. In short windows the large-sample standard error understates how far ρ̂
/// falls short (with 1 everywhere, AR(1) series with ρ 0.7-0.8 failed 1.2-1.9% of the time at
/// 10-20 points at the one-sided 0.5%); in long ones ρ̂ is close enough that the step only
/// costs power (at 60 points and ρ 0.7, +20% was caught 39% of the time with 1 and 53% with 0,
/// both holding 0.75%). Chosen by `python3 bench/longrun_tradeoff.py` (BENCHMARKS.md).
fn short_window_step(n: usize) -> f64 {
    1.5 * ((60.0 - n as f64) / 40.0).clamp(0.0, 1.0)
}

/// The long-run variance of the per-step differences `canary - baseline` (paired by position:
/// the caller aligns the steps). Shared load cancels in the differences.
pub fn paired_difference(canary: &[f64], baseline: &[f64]) -> Result<LongRun, EstimateError> {
    if canary.len() != baseline.len() {
        return Err(EstimateError::LengthMismatch {
            canary: canary.len(),
            baseline: baseline.len(),
        });
    }
    let d: Vec<f64> = canary.iter().zip(baseline).map(|(c, b)| c - b).collect();
    long_run(&d)
}

/// The canary's mean minus the baseline's for series that are not paired, each with its own
/// long-run variance; Welch-Satterthwaite degrees of freedom.
pub fn unpaired_difference(
    canary: &[f64],
    baseline: &[f64],
) -> Result<MeanEstimate, EstimateError> {
    let c = long_run(canary)?;
    let b = long_run(baseline)?;
    let d = difference(&c.mean_estimate(), &b.mean_estimate());
    checked("canary - baseline", d.estimate, d.variance, d.df)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AR(1) with unit innovations from a fixed linear congruential sequence (uniform noise is
    /// enough for these shape tests).
    fn ar1(n: usize, rho: f64) -> Vec<f64> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut x = 0.0;
        (0..n + 50)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                x = rho * x + u;
                x
            })
            .skip(50)
            .collect()
    }

    #[test]
    fn lag_zero_is_the_plain_variance_with_divisor_n() {
        let x = [1.0, 2.0, 4.0, 7.0];
        // mean 3.5, squares 6.25 + 2.25 + 0.25 + 12.25 = 21, / 4.
        assert!((newey_west(&x, 0).unwrap() - 5.25).abs() < 1e-12);
    }

    #[test]
    fn correlated_series_are_worth_fewer_points() {
        let independent = long_run(&ar1(200, 0.0)).unwrap();
        let correlated = long_run(&ar1(200, 0.7)).unwrap();
        assert!(independent.effective_n > 120.0, "{independent:?}");
        // True effective n at ρ = 0.7: 200·0.3/1.7 ≈ 35.
        assert!(
            correlated.effective_n > 15.0 && correlated.effective_n < 60.0,
            "{correlated:?}"
        );
        assert!(correlated.df < independent.df);
    }

    #[test]
    fn never_below_the_iid_variance() {
        // Alternating: strongly negatively correlated.
        let x: Vec<f64> = (0..30)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let lr = long_run(&x).unwrap();
        assert_eq!(lr.long_run_variance, lr.variance);
        assert_eq!(lr.effective_n, 30.0);
    }

    #[test]
    fn effective_n_never_exceeds_n() {
        // n·s²/s² rounded to 14.000000000000002 before (found by the property test).
        let mut x = vec![0.0; 14];
        x[8] = 5.195_036_821_740_373_5e96;
        let lr = long_run(&x).unwrap();
        assert!(lr.effective_n <= 14.0, "{lr:?}");
    }

    #[test]
    fn degenerate_input_is_a_typed_error() {
        assert!(matches!(
            long_run(&[1.0, 2.0]),
            Err(EstimateError::TooFew { needed: 3, .. })
        ));
        assert_eq!(
            long_run(&[5.0; 10]),
            Err(EstimateError::NoVariation { what: "series" })
        );
        assert_eq!(
            long_run(&[1.0, f64::NAN, 2.0]),
            Err(EstimateError::NonFinite { what: "series" })
        );
        assert_eq!(
            paired_difference(&[1.0, 2.0, 3.0], &[1.0, 2.0]),
            Err(EstimateError::LengthMismatch {
                canary: 3,
                baseline: 2
            })
        );
        // Identical sides: the differences do not vary.
        assert_eq!(
            paired_difference(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]),
            Err(EstimateError::NoVariation { what: "series" })
        );
        // Huge values whose squares overflow: an error, not an infinite variance.
        assert!(long_run(&[1e300, -1e300, 1e300, 0.0]).is_err());
    }
}
