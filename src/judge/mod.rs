//! The judge: one verdict per check from baseline and canary data, the family-wise correction
//! that keeps a whole analysis's false alarms at the checks' significance (`family`), and a
//! weighted score per analysis (`scoring`). It owns the decision rules that turn statistics into
//! `Pass`, `Fail` or `Inconclusive` and the evidence that explains each verdict; it must stay
//! pure (no I/O, no clock, no async), and missing or thin data is a verdict (`Inconclusive` with
//! its cause and reason), never an error and never a pass. This file holds the vocabulary (specs,
//! verdicts, evidence) and the dispatch by kind; each check kind's rule is in a file of its own
//! (`relative`, `absolute`, `trend`, `error_rate`, `error_rate_absolute`), what the kinds share
//! (side summaries, evidence and inconclusive results, significance and wording) in `summary`,
//! the pairing of the two sides' points by nearest timestamp in `align`, and the last guard on
//! non-finite numbers in `finite`. The statistics come from `stats`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Which way is bad for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Latency, errors, memory: the canary being higher is bad.
    HigherIsWorse,
    /// Throughput, success rate: the canary being lower is bad.
    LowerIsWorse,
    /// Any departure beyond the tolerance is bad.
    Either,
}

/// How one summary value of a series is taken for absolute thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    Mean,
    Median,
    Min,
    Max,
    Last,
    /// A quantile in [0, 1] of the window's points.
    Quantile(f64),
}

/// How an absolute kind (`absolute`, `error-rate-absolute`) compares the canary with its
/// threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThresholdTest {
    /// The observed value against the threshold, as a Prometheus alerting rule reads "error rate
    /// above 0.5%": the aggregate of at least `min_samples` points, or the error rate summed over
    /// at least `min_samples` requests; beyond the threshold fails. The default: it is what
    /// operators mean by a limit.
    #[default]
    Observed,
    /// Fail only when a test shows the canary's true value beyond the threshold at the
    /// confidence: an exact binomial test for error rates and for medians and percentiles (the
    /// points beyond the threshold), Student's t for means. Min, max and last are single points
    /// and cannot be tested. Records written before the option existed read back as observed.
    Statistical,
}

impl ThresholdTest {
    /// "observed" or "statistical", as written in rule files.
    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdTest::Observed => "observed",
            ThresholdTest::Statistical => "statistical",
        }
    }
}

impl Aggregate {
    /// Whether `test = "statistical"` can test this aggregate: a mean, a median or a quantile
    /// strictly between 0 and 1; min, max and last are single points (see `absolute`).
    pub fn has_test(self) -> bool {
        absolute::testable(self)
    }
}

/// What a check compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum CheckKind {
    /// Canary series vs baseline series. Fails when the canary is worse by more than `tolerance`,
    /// a fraction of the baseline (0.10 = 10% above), with statistical evidence at the confidence.
    Relative { tolerance: f64 },
    /// The canary's aggregate vs a fixed threshold on the metric's own scale (p99 ≤ 0.5 s).
    Absolute {
        threshold: f64,
        aggregate: Aggregate,
        /// The observed aggregate (default) or a statistical test of it.
        #[serde(default)]
        test: ThresholdTest,
    },
    /// Errors and totals summed over the window, canary rate vs baseline rate. `tolerance` is in
    /// rate units: 0.001 = 0.1 percentage points.
    ErrorRate { tolerance: f64 },
    /// The canary's error rate (summed errors / summed totals) vs a fixed rate (0.005 = 0.5%).
    ErrorRateAbsolute {
        threshold: f64,
        /// The observed rate (default) or an exact binomial test of it.
        #[serde(default)]
        test: ThresholdTest,
    },
    /// The canary's slope per minute (Theil-Sen) vs a limit: memory or queue depth growing.
    Trend { max_slope_per_minute: f64 },
}

impl CheckKind {
    /// Whether the check compares the canary with the baseline (and so cannot judge when the
    /// baseline serves no traffic): relative and error-rate checks. Absolute, error-rate-absolute
    /// and trend checks judge the canary alone (the baseline is shown for context).
    pub fn needs_baseline(&self) -> bool {
        match self {
            CheckKind::Relative { .. } | CheckKind::ErrorRate { .. } => true,
            CheckKind::Absolute { .. }
            | CheckKind::ErrorRateAbsolute { .. }
            | CheckKind::Trend { .. } => false,
        }
    }
}

/// Whether the baseline serves traffic while the data is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BaselineTraffic {
    /// The baseline serves the traffic the canary does not.
    #[default]
    Serving,
    /// The canary has all the traffic (weight 100): whatever the baseline's queries return is
    /// left over from before, so checks that need a baseline are not applicable.
    Retired,
}

impl BaselineTraffic {
    /// The baseline's traffic when the canary has `weight`% of it.
    pub fn at_weight(weight: u8) -> Self {
        if weight >= 100 {
            BaselineTraffic::Retired
        } else {
            BaselineTraffic::Serving
        }
    }
}

/// The reason of a check that is not applicable because the baseline has no traffic.
pub const NOT_APPLICABLE_AT_100: &str = "not applicable: the baseline has no traffic at 100%";

/// The settings of one check, as the judge needs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSpec {
    /// Shared with the check's trigger in the rollout's plan (one allocation per check).
    pub name: Arc<str>,
    pub kind: CheckKind,
    pub direction: Direction,
    /// Confidence for statistical evidence, in (0, 1); default 0.99.
    pub confidence: f64,
    /// Minimum finite points per side; for error-rate kinds, the minimum total events per side.
    pub min_samples: usize,
}

/// One observation of a series: unix time in seconds and a value (possibly NaN or ±inf, which
/// the judge drops and counts).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub t: f64,
    pub v: f64,
}

/// One observation of a counter pair: errors and totals in the interval ending at `t`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CountPoint {
    pub t: f64,
    pub errors: f64,
    pub total: f64,
}

/// One side's data for a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "shape", content = "points")]
pub enum SideData {
    Values(Vec<Point>),
    Counts(Vec<CountPoint>),
}

mod absolute;
mod align;
mod decision;
mod effective_counts;
mod error_rate;
mod error_rate_absolute;
mod family;
mod finite;
mod relative;
mod scoring;
mod staged;
mod summary;
mod trend;

pub use family::{
    FamilyControl, FamilyEvidence, apply_family_control, judge_analysis, judge_analysis_with,
};
pub use scoring::{
    AnalysisOutcome, AnalysisScore, GroupScore, ScoredCheck, Scoring, score_analysis,
};
pub use summary::MAX_EXACT_EVENTS;
pub use trend::MAX_TREND_POINTS;

use summary::inconclusive_result;

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not enough evidence either way (too few points, no data, a test that cannot be computed,
    /// a number that overflowed). Never to be read as a pass.
    Inconclusive {
        reason: String,
        /// Why, as a closed set for code to act on (`reason` is for people). Records written
        /// before causes existed read back as [`InconclusiveCause::Untestable`].
        #[serde(default)]
        cause: InconclusiveCause,
    },
}

/// Why a verdict is inconclusive. Code decides on this, never on the reason's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InconclusiveCause {
    /// A side the check needs has no usable points or no events (an empty answer, only NaN).
    NoData,
    /// A side has fewer points (or events) than the check's minimum.
    TooFew,
    /// A number on the way to the verdict was NaN or infinite, or too large to compute with
    /// exactly (summed counts beyond 2^53, a sum or a ratio that overflowed): the arithmetic
    /// cannot be trusted, so neither can a pass or a fail.
    NonFinite,
    /// More points than the check can judge (a trend takes at most [`MAX_TREND_POINTS`]).
    TooMany,
    /// The check compares the canary with a baseline that has no traffic (the canary has all
    /// of it, at 100%): there is nothing to compare with. Scoring and the rollout leave such a
    /// check out instead of counting it against the analysis ([`BaselineTraffic`]).
    NotApplicable,
    /// The check's settings cannot be used, or its data has the wrong shape.
    Setting,
    /// A query returned several series where the check needs one (a label left out of its
    /// aggregation): which one is the canary's is anyone's guess, so none is used. Not a lack of
    /// data; the query must be fixed (`sum by ()`, or a label matcher that selects one).
    SeveralSeries,
    /// The data can show neither that the canary is worse than the tolerance nor that it is
    /// within it: the confidence bound on the worsening lies beyond the tolerance while the
    /// worsening is not significant (too few points, too much noise, or points so correlated
    /// that they are worth few independent ones). A pass must be shown, so thin evidence holds
    /// the stage instead of passing it; more data (a longer window, a later analysis) decides.
    NotShown,
    /// A staged check's evidence is still accruing (`staged`): since its stage started, too few
    /// points, or a bound not yet within the tolerance nor a worsening shown beyond it. The
    /// anytime-valid bound may be looked at again at every analysis, so this holds the stage
    /// without counting towards the inconclusive streak: the next analysis, with more of the
    /// stage's points, decides.
    Accruing,
    /// The test could not be computed on this data (a constant series, all times equal, ...).
    #[default]
    Untestable,
}

impl Verdict {
    /// An inconclusive verdict with its cause and reason.
    pub fn inconclusive(cause: InconclusiveCause, reason: impl Into<String>) -> Self {
        Verdict::Inconclusive {
            reason: reason.into(),
            cause,
        }
    }

    /// The cause of an inconclusive verdict; `None` for a pass or a fail.
    pub fn cause(&self) -> Option<InconclusiveCause> {
        match self {
            Verdict::Inconclusive { cause, .. } => Some(*cause),
            Verdict::Pass | Verdict::Fail => None,
        }
    }

    /// "pass", "fail" or "inconclusive".
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive { .. } => "inconclusive",
        }
    }
}

/// One check's verdict, a sentence saying why, and the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub verdict: Verdict,
    /// One sentence for a person: why this verdict (for `Inconclusive`, the same as its reason).
    pub reason: String,
    pub evidence: Evidence,
}

/// Everything the verdict was based on, for reports and audits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub baseline: SideSummary,
    pub canary: SideSummary,
    /// The effect of the canary; absent when no comparison could be made.
    pub effect: Option<Effect>,
    /// The p-value of the test used, for the direction that is bad.
    pub p_value: Option<f64>,
    /// The statistical test used ("Wilcoxon signed-rank", "Fisher's exact", ...).
    pub test: Option<String>,
    /// What was compared with what ("paired log-ratio by timestamp, 28 of 30 points paired
    /// (nearest within half the 60s step)").
    pub comparison: Option<String>,
    pub thresholds: Thresholds,
    /// How the analysis's family-wise correction treated this check; absent when the check was
    /// judged on its own (a single tested check, no p-value, or the correction turned off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<FamilyEvidence>,
    /// How the queries' answers were read before they were judged, for a person: sentences such
    /// as "canary: errors query returned no series: 0 errors over 4500 requests". Written by the
    /// daemon, which reads the answers; empty when every answer was used as it came.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Which rule decided the verdict, and the confidence bound it rested on; absent for
    /// verdicts decided before any comparison (no data, too few points) and in records written
    /// before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// The rule that decided a verdict (see `decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionRule {
    /// Fail: the worsening is significant at the check's level and its estimate is beyond the
    /// tolerance (limit, threshold).
    ShownBeyond,
    /// Pass: the confidence bound on the worsening lies within the tolerance.
    ShownWithin,
    /// Inconclusive ([`InconclusiveCause::NotShown`]): neither of the two.
    NotShown,
    /// The observed value against the threshold, with no test (absolute kinds by default).
    Observed,
}

/// How a compared check was decided: the rule and the bound on the worsening it rested on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub rule: DecisionRule,
    /// The confidence bound on the bad side of the estimate (the upper one where higher is
    /// worse, the lower one where lower is worse, the farther one for `either`), at the
    /// evidence's confidence; for an observed comparison, the observed value. NaN (`null`) when
    /// unbounded.
    #[serde(deserialize_with = "number_or_nan")]
    pub bound: f64,
    /// The tolerance, limit or threshold on the same scale as `bound` (for a ratio, 1 +
    /// tolerance).
    #[serde(deserialize_with = "number_or_nan")]
    pub limit: f64,
    pub scale: DecisionScale,
}

/// The scale of a [`Decision`]'s bound and limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionScale {
    /// The ratio canary / baseline.
    Ratio,
    /// The difference canary − baseline, on the metric's own scale.
    Difference,
    /// The canary's value (an aggregate or a rate) against a threshold.
    Value,
    /// The slope per minute.
    SlopePerMinute,
}

/// What one side's data looked like after dropping unusable points.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideSummary {
    /// Usable points (finite values; for counts, finite, non-negative, errors ≤ total).
    pub points: usize,
    /// Points dropped as NaN/inf (or, for counts, as impossible).
    pub dropped: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// The aggregate an absolute check compared with its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<AggregateValue>,
    /// Summed errors (counts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    /// Summed totals (counts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<f64>,
    /// errors / total over the window (counts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Theil-Sen slope per minute (trend checks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slope_per_minute: Option<f64>,
}

/// An aggregate and its value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AggregateValue {
    pub aggregate: Aggregate,
    #[serde(deserialize_with = "number_or_nan")]
    pub value: f64,
}

/// The size of the canary's effect, on the metric's own scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// Canary / baseline (or canary / threshold for absolute kinds); absent when the reference is 0.
    pub ratio: Option<f64>,
    /// Canary − baseline (or canary − threshold; for trends, the slope per minute).
    #[serde(deserialize_with = "number_or_nan")]
    pub difference: f64,
    /// The confidence interval of the effect.
    pub interval: Option<Interval>,
}

/// Read a number that JSON may hold as `null`: serde_json writes NaN and the infinities as
/// `null`, so a recorded result with an unbounded interval reads back, as NaN, instead of
/// failing to read.
fn number_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A confidence interval and what it bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    #[serde(deserialize_with = "number_or_nan")]
    pub low: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub high: f64,
    pub confidence: f64,
    pub scale: IntervalScale,
}

/// What an [`Interval`] is an interval of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntervalScale {
    /// The ratio canary / baseline.
    Ratio,
    /// The difference canary − baseline.
    Difference,
    /// The canary's error rate.
    Rate,
    /// The slope per minute.
    SlopePerMinute,
}

/// The settings a verdict was judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub direction: Direction,
    pub confidence: f64,
    pub min_samples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_slope_per_minute: Option<f64>,
}

impl Thresholds {
    fn of(spec: &CheckSpec) -> Self {
        let mut t = Thresholds {
            direction: spec.direction,
            confidence: spec.confidence,
            min_samples: spec.min_samples,
            tolerance: None,
            threshold: None,
            max_slope_per_minute: None,
        };
        match spec.kind {
            CheckKind::Relative { tolerance } | CheckKind::ErrorRate { tolerance } => {
                t.tolerance = Some(tolerance)
            }
            CheckKind::Absolute { threshold, .. }
            | CheckKind::ErrorRateAbsolute { threshold, .. } => t.threshold = Some(threshold),
            CheckKind::Trend {
                max_slope_per_minute,
            } => t.max_slope_per_minute = Some(max_slope_per_minute),
        }
        t
    }
}

/// Judge one check: `Pass`, `Fail` or `Inconclusive`, with the evidence.
///
/// Rules shared by every kind:
/// - unusable points (NaN, ±inf; for counts also negative or errors > total) are dropped and
///   counted; a side left empty is `Inconclusive("no data ...")`;
/// - fewer than `min_samples` points (events, for error rates) on a side that matters is
///   `Inconclusive`, never `Pass`;
/// - a statistical `Fail` needs both evidence at the confidence (the effect's interval at
///   `confidence` excludes "no change" on the bad side, see [`summary::significance_level`]) and an
///   effect whose estimate is beyond the tolerance, limit or threshold in the bad direction;
/// - a number on the way to a verdict that is NaN or infinite, or too large to compute with
///   (summed counts, sums, ratios, logs, slopes, p-values, bounds), makes the verdict
///   `Inconclusive` with [`InconclusiveCause::NonFinite`]: never a pass and never a fail
///   (the guards are where intermediates are formed, and [`finite::guard`] on every verdict).
///
/// See the kind-specific rules on [`CheckKind`] and in the kinds' modules (`relative`,
/// `absolute`, `trend`, `error_rate`, `error_rate_absolute`).
pub fn judge_check(spec: &CheckSpec, baseline: &SideData, canary: &SideData) -> CheckResult {
    judge_check_with(spec, baseline, canary, BaselineTraffic::Serving)
}

/// The result of a check whose answers could not be read into data at all (a query that
/// returned several series): `Inconclusive` with `cause` and `reason`, the evidence holding the
/// thresholds only. Like every inconclusive check, it stays out of the family-wise correction.
pub fn unjudged(spec: &CheckSpec, cause: InconclusiveCause, reason: String) -> CheckResult {
    inconclusive_result(spec, Thresholds::of(spec), cause, reason)
}

/// [`judge_check`] knowing whether the baseline serves traffic: with
/// [`BaselineTraffic::Retired`], a check that needs a baseline ([`CheckKind::needs_baseline`])
/// is `Inconclusive` with [`InconclusiveCause::NotApplicable`] ("not applicable: the baseline
/// has no traffic at 100%"), whatever its data, and the other kinds are judged as usual.
pub fn judge_check_with(
    spec: &CheckSpec,
    baseline: &SideData,
    canary: &SideData,
    traffic: BaselineTraffic,
) -> CheckResult {
    let thresholds = Thresholds::of(spec);
    if let Some(problem) = setting_problem(spec) {
        return inconclusive_result(spec, thresholds, InconclusiveCause::Setting, problem);
    }
    if traffic == BaselineTraffic::Retired && spec.kind.needs_baseline() {
        let reason = NOT_APPLICABLE_AT_100.to_string();
        return inconclusive_result(spec, thresholds, InconclusiveCause::NotApplicable, reason);
    }
    finite::guard(spec, judge_kind(spec, baseline, canary, thresholds))
}

/// How a staged check is judged beyond its spec (see [`judge_check_staged`]).
#[derive(Debug, Clone, Copy)]
pub struct Staged<'a> {
    /// The one-sided significance its pass is held to (the check's own).
    pub pass: f64,
    /// The baseline's and the canary's points just before the stage's evidence starts, for
    /// the dependence of the check's points only: never judged.
    pub before: Option<(&'a SideData, &'a SideData)>,
}

/// [`judge_check_with`] on a stage's evidence (every point since the stage's warm-up) with the
/// anytime-valid bounds: failed at the significance of `spec` (the stage's share), passed on the
/// upper bound at the one-sided significance `staged.pass` (the check's own), the dependence of
/// its points pooled with `staged.before`'s: see `staged`. A check that is not staged
/// ([`staged_supports`]) is judged as by [`judge_check_with`].
pub fn judge_check_staged(
    spec: &CheckSpec,
    baseline: &SideData,
    canary: &SideData,
    traffic: BaselineTraffic,
    staged: Staged<'_>,
) -> CheckResult {
    let thresholds = Thresholds::of(spec);
    if setting_problem(spec).is_some()
        || (traffic == BaselineTraffic::Retired && spec.kind.needs_baseline())
    {
        return judge_check_with(spec, baseline, canary, traffic);
    }
    match staged::judge(spec, baseline, canary, thresholds, staged) {
        Some(result) => finite::guard(spec, result),
        None => judge_check_with(spec, baseline, canary, traffic),
    }
}

/// Whether [`judge_check_staged`] judges `spec` on its stage's evidence.
pub fn staged_supports(spec: &CheckSpec) -> bool {
    staged::supports(spec)
}

/// The verdict of `spec`'s kind, before the guard on non-finite numbers.
fn judge_kind(
    spec: &CheckSpec,
    baseline: &SideData,
    canary: &SideData,
    thresholds: Thresholds,
) -> CheckResult {
    let shape = |side: &SideData| match side {
        SideData::Values(_) => "values",
        SideData::Counts(_) => "counts (errors, total)",
    };
    match (&spec.kind, baseline, canary) {
        (CheckKind::Relative { tolerance }, SideData::Values(b), SideData::Values(c)) => {
            relative::judge(spec, *tolerance, b, c, thresholds)
        }
        (
            CheckKind::Absolute {
                threshold,
                aggregate,
                test,
            },
            b,
            SideData::Values(c),
        ) => absolute::judge(spec, (*threshold, *aggregate, *test), b, c, thresholds),
        (
            CheckKind::Trend {
                max_slope_per_minute,
            },
            b,
            SideData::Values(c),
        ) => trend::judge(spec, *max_slope_per_minute, b, c, thresholds),
        (CheckKind::ErrorRate { tolerance }, SideData::Counts(b), SideData::Counts(c)) => {
            error_rate::judge(spec, *tolerance, b, c, thresholds)
        }
        (CheckKind::ErrorRateAbsolute { threshold, test }, b, SideData::Counts(c)) => {
            error_rate_absolute::judge(spec, (*threshold, *test), b, c, thresholds)
        }
        (kind, b, c) => {
            let needs = match kind {
                CheckKind::ErrorRate { .. } | CheckKind::ErrorRateAbsolute { .. } => {
                    "counts (errors, total)"
                }
                _ => "values",
            };
            let reason = format!(
                "check `{}` needs {needs} but got baseline {} and canary {}",
                spec.name,
                shape(b),
                shape(c)
            );
            inconclusive_result(spec, thresholds, InconclusiveCause::Setting, reason)
        }
    }
}

/// A setting the judge cannot work with, as a sentence. Rules files validate these earlier; the
/// judge still refuses to guess.
fn setting_problem(spec: &CheckSpec) -> Option<String> {
    if !(spec.confidence > 0.0 && spec.confidence < 1.0) {
        return Some(format!(
            "confidence must be between 0 and 1 (exclusive), got {}",
            spec.confidence
        ));
    }
    let (what, value) = match spec.kind {
        CheckKind::Relative { tolerance } | CheckKind::ErrorRate { tolerance } => {
            ("tolerance", tolerance)
        }
        CheckKind::Absolute { threshold, .. } | CheckKind::ErrorRateAbsolute { threshold, .. } => {
            ("threshold", threshold)
        }
        CheckKind::Trend {
            max_slope_per_minute,
        } => ("max_slope_per_minute", max_slope_per_minute),
    };
    if !value.is_finite() {
        return Some(format!("{what} must be a finite number, got {value}"));
    }
    if what == "tolerance" && value < 0.0 {
        return Some(format!("tolerance must not be negative, got {value}"));
    }
    if let CheckKind::Absolute {
        aggregate: Aggregate::Quantile(q),
        ..
    } = spec.kind
        && !(0.0..=1.0).contains(&q)
    {
        return Some(format!("aggregate quantile must be in [0, 1], got {q}"));
    }
    None
}

#[cfg(test)]
mod tests;
