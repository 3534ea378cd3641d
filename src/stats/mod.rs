//! Statistical tests for comparing a canary with its baseline, exact to SciPy.
//!
//! This module owns the numbers and nothing else: every function takes plain slices of finite
//! values and returns a test result or a [`StatsError`]. It does no I/O, reads no clock and knows
//! nothing of rules or rollouts; dropping NaN/inf and deciding what "too little data" means is the
//! judge's job. Distributions come from `statrs`; the exact null distributions of Mann-Whitney and
//! of the Wilcoxon signed-rank test are ours (statrs's Mann-Whitney is wrong unless the first
//! sample is the larger one, and enumerates subsets), and so is the selection of order statistics
//! of pairwise differences and Walsh averages behind the Hodges-Lehmann intervals.
//! Conventions follow SciPy: `Greater` means the first sample (`x`, or the canary) tends to be larger.
//! Welch's t-test and the two-sample Kolmogorov-Smirnov test, ported too but used by no check,
//! live with the SciPy reference tests (`tests/stats_reference/`) until a check needs them.
//! The estimators for dependent and overdispersed data (issue 18: [`long_run`], the dispersion
//! of error counts, relative differences, sharing [`MeanEstimate`] and its bounds) return an
//! [`EstimateError`] instead, and are checked against statsmodels by
//! `tests/core/calibration_reference.rs`.
//! The anytime-valid bounds of issue 19 ([`SequentialMean`], [`SequentialRates`], the α split
//! over a rollout's stages) return a [`SequentialError`]; docs/sequential.md argues them.

mod alpha_split;
mod dispersion;
mod estimate;
mod fisher;
mod hodges_lehmann;
mod long_run;
mod mann_kendall;
mod mann_whitney;
mod proportion;
mod quantile;
mod ratio;
mod robust;
mod sequential;
mod sequential_rates;
mod signed_rank;
mod slope_selection;
mod theil_sen;
mod walsh;

pub use alpha_split::split_alpha;
pub use dispersion::{
    Dispersion, PairedDispersion, paired_dispersion, quasi_binomial, rate_difference,
};
pub use estimate::{EstimateError, MeanEstimate, Tolerance, difference};
pub use fisher::{FisherExact, fisher_exact};
pub use hodges_lehmann::{ShiftEstimate, hodges_lehmann, hodges_lehmann_ci};
pub use long_run::{
    LongRun, long_run, long_run_dependence_from, long_run_detrended, newey_west,
    newey_west_1994_lag, paired_difference, unpaired_difference,
};
pub use mann_kendall::{MannKendall, mann_kendall};
pub use mann_whitney::{MannWhitney, MwMethod, mann_whitney_u};
pub use proportion::{Counts, ZTest, two_proportion_z};
pub use quantile::{quantile, quantiles};
pub use ratio::{relative_paired, relative_unpaired};
pub use robust::{SPIKE_MADS, despike};
pub use sequential::{
    AnytimeP, Dependence, MIN_POINTS, MIN_POINTS_WITH_PRIOR, SequentialBounds, SequentialError,
    SequentialMean, Spread, TARGET_POINTS, ln_e_value, mixing_parameter, one_sided_boundary,
    radius, two_sided_boundary,
};
pub use sequential_rates::SequentialRates;
pub use signed_rank::{
    SignedRank, SignedRankMethod, signed_rank_test, signed_rank_test_sorted, sort_differences,
};
pub use theil_sen::{QUADRATIC_UP_TO, TheilSen, theil_sen};
pub use walsh::{walsh_shift_ci, walsh_shift_ci_sorted};

/// Which way the alternative hypothesis points, in SciPy's sense: `Greater` means the first
/// sample (`x`, or the canary) tends to be larger than the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alternative {
    TwoSided,
    Less,
    Greater,
}

/// Why a test could not be computed. The judge turns these into `Inconclusive` verdicts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    /// A sample has fewer points than the test needs.
    #[error("too few points: {what} needs at least {needed}, got {got}")]
    TooFew {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    /// A value is NaN or infinite; callers must drop those first.
    #[error("non-finite value in {what}")]
    NonFinite { what: &'static str },
    /// An argument is out of its domain (a confidence outside (0, 1), a quantile outside [0, 1],
    /// counts with more errors than totals, samples of different lengths where pairs are needed).
    #[error("invalid argument: {0}")]
    Invalid(String),
}
