//! `canaryd judge`: judge a baseline file and a canary file offline, exactly as one check of a
//! rule would. This file owns reading and parsing the two data files (shape detection, line
//! numbered errors) and printing the verdict; the decision itself is `judge::judge_check`, and
//! nothing here talks to the network or keeps state.
//!
//! Exit codes: 0 pass, 1 fail, 2 inconclusive, 3 bad usage or unreadable input.

use crate::judge::{
    Aggregate, CheckKind, CheckResult, CheckSpec, CountPoint, Direction, Effect, IntervalScale,
    Point, SideData, SideSummary, ThresholdTest, Verdict, judge_check,
};
use clap::ValueEnum;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Judge baseline and canary data files offline, as one check would.
///
/// Files hold one number per line, or CSV `timestamp,value`, or CSV `timestamp,errors,total` for
/// error rates (a header line, blank lines and `#` comments are allowed; NaN and inf values are
/// dropped and counted). Timestamps are unix seconds or RFC 3339. Points of the two files with
/// the same timestamps are compared pairwise.
#[derive(Debug, clap::Args)]
pub struct JudgeArgs {
    /// The baseline's data file.
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// The canary's data file.
    #[arg(long, value_name = "FILE")]
    pub canary: PathBuf,
    /// What to compare.
    #[arg(long, value_enum, default_value_t = KindArg::Relative)]
    pub kind: KindArg,
    /// Which way is bad.
    #[arg(long, value_enum, default_value_t = DirectionArg::HigherIsWorse)]
    pub direction: DirectionArg,
    /// Allowed worsening: a fraction of the baseline for `relative` (default 0.10 = 10%), a rate
    /// difference for `error-rate` (default 0.001 = 0.1 percentage points).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// The fixed limit for `absolute` (metric units) and `error-rate-absolute` (a rate, 0.005 = 0.5%).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// The aggregate `absolute` compares: mean, median, min, max, last, or a quantile such as
    /// p99 or q0.999.
    #[arg(long, value_parser = parse_aggregate)]
    pub aggregate: Option<Aggregate>,
    /// How `absolute` and `error-rate-absolute` compare with the threshold: the observed value
    /// (default, as an alerting rule reads it) or a statistical test at the confidence.
    #[arg(long, value_enum)]
    pub test: Option<TestArg>,
    /// Confidence required for statistical evidence, in (0, 1).
    #[arg(long, default_value_t = 0.99)]
    pub confidence: f64,
    /// Fewest usable points per side (events per side for error rates). Default: 10 points, 1 for
    /// `absolute`, 100 events for error rates.
    #[arg(long)]
    pub min_samples: Option<usize>,
    /// The slope limit for `trend`, in metric units per minute.
    #[arg(long)]
    pub max_slope_per_minute: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputArg::Table)]
    pub output: OutputArg,
    /// The check's name, shown in the output.
    #[arg(long, default_value = "judge")]
    pub name: String,
    /// Take the check's settings from this rule file (with `--check`) instead of the flags.
    #[arg(
        long,
        value_name = "FILE",
        requires = "check",
        conflicts_with_all = ["kind", "direction", "tolerance", "threshold", "aggregate",
            "test", "confidence", "min_samples", "max_slope_per_minute"]
    )]
    pub rule: Option<PathBuf>,
    /// The check of `--rule` to judge as.
    #[arg(long, value_name = "NAME", requires = "rule")]
    pub check: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Relative,
    Absolute,
    ErrorRate,
    ErrorRateAbsolute,
    Trend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestArg {
    Observed,
    Statistical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DirectionArg {
    HigherIsWorse,
    LowerIsWorse,
    Either,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Table,
    Json,
}

fn parse_aggregate(s: &str) -> Result<Aggregate, String> {
    let lower = s.trim().to_ascii_lowercase();
    let quantile = |q: f64| {
        if (0.0..=1.0).contains(&q) {
            Ok(Aggregate::Quantile(q))
        } else {
            Err(format!("quantile `{s}` is outside [0, 1]"))
        }
    };
    match lower.as_str() {
        "mean" | "avg" => Ok(Aggregate::Mean),
        "median" => Ok(Aggregate::Median),
        "min" => Ok(Aggregate::Min),
        "max" => Ok(Aggregate::Max),
        "last" => Ok(Aggregate::Last),
        _ => {
            if let Some(pct) = lower.strip_prefix('p')
                && let Ok(v) = pct.parse::<f64>()
            {
                return quantile(v / 100.0);
            }
            if let Some(q) = lower.strip_prefix('q')
                && let Ok(v) = q.parse::<f64>()
            {
                return quantile(v);
            }
            Err(format!(
                "unknown aggregate `{s}`; use mean, median, min, max, last, pNN (p99) or qX (q0.999)"
            ))
        }
    }
}

/// Why the command could not run: exit 3.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Usage(String),
}

/// What a data file turned out to hold.
#[derive(Debug, Clone, PartialEq)]
pub enum DataFile {
    /// One number per line, without timestamps.
    Plain(Vec<f64>),
    /// `timestamp,value`.
    Timed(Vec<Point>),
    /// `timestamp,errors,total`.
    Counts(Vec<CountPoint>),
}

impl DataFile {
    fn describe(&self) -> &'static str {
        match self {
            DataFile::Plain(_) => "one number per line",
            DataFile::Timed(_) => "`timestamp,value` lines",
            DataFile::Counts(_) => "`timestamp,errors,total` lines",
        }
    }
}

fn parse_number(field: &str) -> Option<f64> {
    field.parse::<f64>().ok()
}

fn parse_timestamp(field: &str) -> Option<f64> {
    if let Some(t) = parse_number(field) {
        return t.is_finite().then_some(t);
    }
    chrono::DateTime::parse_from_rfc3339(field)
        .ok()
        .map(|dt| dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_nanos()) / 1e9)
}

fn is_header(fields: &[&str]) -> bool {
    let none_numeric = fields.iter().all(|f| parse_number(f).is_none());
    match fields {
        [single] => {
            none_numeric
                && matches!(
                    single.to_ascii_lowercase().as_str(),
                    "value" | "values" | "v"
                )
        }
        _ => none_numeric && fields.iter().all(|f| parse_timestamp(f).is_none()),
    }
}

/// Parse the text of a data file. `path` is only used in error messages.
pub fn parse_data(path: &str, text: &str) -> Result<DataFile, JudgeError> {
    let line_err = |line: usize, message: String| JudgeError::Line {
        path: path.to_string(),
        line,
        message,
    };
    let mut shape: Option<(usize, usize)> = None; // (fields, first data line)
    let mut plain = Vec::new();
    let mut timed = Vec::new();
    let mut counts = Vec::new();
    let mut seen_content = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if !seen_content {
            seen_content = true;
            if is_header(&fields) {
                continue;
            }
        }
        let (width, first) = *shape.get_or_insert((fields.len(), line_no));
        if fields.len() != width {
            let expected = match width {
                1 => "1 field (a number)".to_string(),
                2 => "2 fields (timestamp,value)".to_string(),
                _ => "3 fields (timestamp,errors,total)".to_string(),
            };
            return Err(line_err(
                line_no,
                format!(
                    "expected {expected} like line {first}, found {}",
                    fields.len()
                ),
            ));
        }
        let number = |field: &str| {
            parse_number(field)
                .ok_or_else(|| line_err(line_no, format!("expected a number, found `{field}`")))
        };
        let timestamp = |field: &str| {
            parse_timestamp(field).ok_or_else(|| {
                line_err(
                    line_no,
                    format!("expected a timestamp (unix seconds or RFC 3339), found `{field}`"),
                )
            })
        };
        match width {
            1 => plain.push(number(fields[0])?),
            2 => timed.push(Point {
                t: timestamp(fields[0])?,
                v: number(fields[1])?,
            }),
            3 => {
                let (t, errors, total) = (
                    timestamp(fields[0])?,
                    number(fields[1])?,
                    number(fields[2])?,
                );
                if errors < 0.0 || total < 0.0 {
                    return Err(line_err(
                        line_no,
                        "errors and total must not be negative".into(),
                    ));
                }
                if errors.is_finite() && total.is_finite() && errors > total {
                    return Err(line_err(
                        line_no,
                        format!("errors ({errors}) exceed total ({total})"),
                    ));
                }
                counts.push(CountPoint { t, errors, total });
            }
            n => {
                return Err(line_err(
                    line_no,
                    format!(
                        "expected a number, `timestamp,value` or `timestamp,errors,total`, found {n} fields"
                    ),
                ));
            }
        }
    }
    Ok(match shape {
        Some((1, _)) => DataFile::Plain(plain),
        Some((2, _)) => DataFile::Timed(timed),
        Some(_) => DataFile::Counts(counts),
        // An empty file is data too: "no data" is the judge's verdict, not an input error.
        None => DataFile::Plain(Vec::new()),
    })
}

fn read_data(path: &Path) -> Result<DataFile, JudgeError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| JudgeError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_data(&shown, &text)
}

/// Turn a parsed file into the judge's side data for `kind`.
fn side_data(path: &Path, file: DataFile, counts_needed: bool) -> Result<SideData, JudgeError> {
    let wrong = |file: &DataFile| JudgeError::File {
        path: path.display().to_string(),
        message: if counts_needed {
            format!(
                "error-rate kinds need `timestamp,errors,total` lines, found {}",
                file.describe()
            )
        } else {
            format!(
                "this kind needs one number per line or `timestamp,value` lines, found {}",
                file.describe()
            )
        },
    };
    match (file, counts_needed) {
        // No timestamps: the points cannot be paired with the other side's.
        (DataFile::Plain(v), false) => Ok(SideData::Values(
            v.into_iter().map(|v| Point { t: f64::NAN, v }).collect(),
        )),
        (DataFile::Timed(p), false) => Ok(SideData::Values(p)),
        (DataFile::Counts(c), true) => Ok(SideData::Counts(c)),
        (DataFile::Plain(v), true) if v.is_empty() => Ok(SideData::Counts(Vec::new())),
        (file, _) => Err(wrong(&file)),
    }
}

/// The check named `--check` of the rule file `--rule`, validated as `canaryd check` would
/// (but without a daemon config: source, actuator and receiver names are not checked).
fn rule_spec(path: &std::path::Path, check: &str) -> Result<CheckSpec, JudgeError> {
    let known = crate::rules::KnownNames::any();
    let rules = crate::rules::load_paths(&[path.to_path_buf()], &known).map_err(|problems| {
        JudgeError::Usage(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let checks: Vec<&crate::rules::CheckRule> =
        rules.iter().flat_map(|r| r.checks.iter()).collect();
    checks
        .iter()
        .find(|c| &*c.spec.name == check)
        .map(|c| c.spec.clone())
        .ok_or_else(|| {
            let known: Vec<String> = checks
                .iter()
                .map(|c| format!("`{}`", c.spec.name))
                .collect();
            JudgeError::Usage(format!(
                "{}: no check `{check}`; known: {}",
                path.display(),
                known.join(", ")
            ))
        })
}

/// Build the check from `--rule`/`--check`, or from the flags, refusing flags that do not apply
/// to the kind.
pub fn build_spec(args: &JudgeArgs) -> Result<CheckSpec, JudgeError> {
    if let (Some(rule), Some(check)) = (&args.rule, &args.check) {
        return rule_spec(rule, check);
    }
    let usage = |m: String| Err(JudgeError::Usage(m));
    let kind_name = args
        .kind
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let not_for = |flag: &str| format!("{flag} does not apply to --kind {kind_name}");
    let applies = |flag: &str, given: bool, ok: bool| -> Result<(), JudgeError> {
        if given && !ok {
            return Err(JudgeError::Usage(not_for(flag)));
        }
        Ok(())
    };
    use KindArg::*;
    applies(
        "--tolerance",
        args.tolerance.is_some(),
        matches!(args.kind, Relative | ErrorRate),
    )?;
    applies(
        "--threshold",
        args.threshold.is_some(),
        matches!(args.kind, Absolute | ErrorRateAbsolute),
    )?;
    applies(
        "--aggregate",
        args.aggregate.is_some(),
        args.kind == Absolute,
    )?;
    applies(
        "--test",
        args.test.is_some(),
        matches!(args.kind, Absolute | ErrorRateAbsolute),
    )?;
    let test = match args.test {
        Some(TestArg::Statistical) => ThresholdTest::Statistical,
        Some(TestArg::Observed) | None => ThresholdTest::Observed,
    };
    applies(
        "--max-slope-per-minute",
        args.max_slope_per_minute.is_some(),
        args.kind == Trend,
    )?;
    if !(args.confidence > 0.0 && args.confidence < 1.0) {
        return usage(format!(
            "--confidence must be between 0 and 1 (exclusive), got {}",
            args.confidence
        ));
    }
    let finite = |flag: &str, v: f64| -> Result<f64, JudgeError> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(JudgeError::Usage(format!(
                "{flag} must be a finite number, got {v}"
            )))
        }
    };
    let kind = match args.kind {
        Relative => CheckKind::Relative {
            tolerance: finite("--tolerance", args.tolerance.unwrap_or(0.10))?,
        },
        ErrorRate => CheckKind::ErrorRate {
            tolerance: finite("--tolerance", args.tolerance.unwrap_or(0.001))?,
        },
        Absolute => match args.threshold {
            Some(t) => {
                let aggregate = args.aggregate.unwrap_or(Aggregate::Mean);
                if test == ThresholdTest::Statistical && !aggregate.has_test() {
                    return usage(
                        "--test statistical needs --aggregate mean, median or a quantile \
                         strictly between 0 and 1: min, max and last are single points"
                            .into(),
                    );
                }
                CheckKind::Absolute {
                    threshold: finite("--threshold", t)?,
                    aggregate,
                    test,
                }
            }
            None => return usage("--kind absolute needs --threshold".into()),
        },
        ErrorRateAbsolute => match args.threshold {
            Some(t) if (0.0..=1.0).contains(&t) => {
                CheckKind::ErrorRateAbsolute { threshold: t, test }
            }
            Some(t) => {
                return usage(format!(
                    "--threshold for error-rate-absolute is a rate in [0, 1], got {t}"
                ));
            }
            None => return usage("--kind error-rate-absolute needs --threshold".into()),
        },
        Trend => match args.max_slope_per_minute {
            Some(m) => CheckKind::Trend {
                max_slope_per_minute: finite("--max-slope-per-minute", m)?,
            },
            None => return usage("--kind trend needs --max-slope-per-minute".into()),
        },
    };
    if let Some(t) = args.tolerance
        && t < 0.0
    {
        return usage(format!("--tolerance must not be negative, got {t}"));
    }
    let default_min = match args.kind {
        Relative | Trend => 10,
        Absolute => 1,
        ErrorRate | ErrorRateAbsolute => 100,
    };
    Ok(CheckSpec {
        name: args.name.as_str().into(),
        kind,
        direction: match args.direction {
            DirectionArg::HigherIsWorse => Direction::HigherIsWorse,
            DirectionArg::LowerIsWorse => Direction::LowerIsWorse,
            DirectionArg::Either => Direction::Either,
        },
        confidence: args.confidence,
        min_samples: args.min_samples.unwrap_or(default_min),
    })
}

/// Read both files and judge them.
pub fn judge_files(args: &JudgeArgs) -> Result<CheckResult, JudgeError> {
    let spec = build_spec(args)?;
    let counts_needed = matches!(
        spec.kind,
        CheckKind::ErrorRate { .. } | CheckKind::ErrorRateAbsolute { .. }
    );
    let baseline = side_data(&args.baseline, read_data(&args.baseline)?, counts_needed)?;
    let canary = side_data(&args.canary, read_data(&args.canary)?, counts_needed)?;
    Ok(judge_check(&spec, &baseline, &canary))
}

/// Judge two data files' texts as [`judge_files`] judges the files once read: the same parsing,
/// the same shapes per kind. For the fuzz targets and their regression tests.
pub fn judge_texts(
    spec: &CheckSpec,
    baseline: (&Path, &str),
    canary: (&Path, &str),
) -> Result<CheckResult, JudgeError> {
    let counts_needed = matches!(
        spec.kind,
        CheckKind::ErrorRate { .. } | CheckKind::ErrorRateAbsolute { .. }
    );
    let side = |(path, text): (&Path, &str)| {
        let file = parse_data(&path.display().to_string(), text)?;
        side_data(path, file, counts_needed)
    };
    let baseline = side(baseline)?;
    let canary = side(canary)?;
    Ok(judge_check(spec, &baseline, &canary))
}

/// The JSON document `--output json` prints.
pub fn json_report(result: &CheckResult) -> serde_json::Value {
    serde_json::json!({
        "check": result.name,
        "verdict": result.verdict.as_str(),
        "reason": result.reason,
        "p_value": result.evidence.p_value,
        "effect": result.evidence.effect,
        "baseline": result.evidence.baseline,
        "canary": result.evidence.canary,
        "test": result.evidence.test,
        "comparison": result.evidence.comparison,
        "thresholds": result.evidence.thresholds,
        "evidence": result.evidence,
    })
}

fn num(x: Option<f64>) -> String {
    let Some(v) = x else {
        return "-".into();
    };
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 1e6 || v.abs() < 1e-3 {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

fn effect_line(effect: &Effect) -> String {
    let mut s = String::new();
    if let Some(r) = effect.ratio {
        let _ = write!(s, "ratio {r:.4}, ");
    }
    let _ = write!(s, "difference {}", num(Some(effect.difference)));
    if let Some(i) = effect.interval {
        let of = match i.scale {
            IntervalScale::Ratio => "ratio",
            IntervalScale::Difference => "difference",
            IntervalScale::Rate => "rate",
            IntervalScale::SlopePerMinute => "slope per minute",
        };
        let _ = write!(
            s,
            "; {:.0}% interval of the {of} [{}, {}]",
            i.confidence * 100.0,
            num(Some(i.low)),
            num(Some(i.high))
        );
    }
    s
}

/// The readable table printed by default.
pub fn table_report(result: &CheckResult) -> String {
    let e = &result.evidence;
    let mut out = String::new();
    let verdict = result.verdict.as_str().to_ascii_uppercase();
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<12}{v}");
    };
    row("check", result.name.clone());
    row("verdict", verdict);
    row("reason", result.reason.clone());
    if let Some(t) = &e.test {
        row("test", t.clone());
    }
    if let Some(c) = &e.comparison {
        row("comparison", c.clone());
    }
    row("p-value", num(e.p_value));
    if let Some(effect) = &e.effect {
        row("effect", effect_line(effect));
    }
    let t = &e.thresholds;
    let mut limits = Vec::new();
    if let Some(v) = t.tolerance {
        limits.push(format!("tolerance {v}"));
    }
    if let Some(v) = t.threshold {
        limits.push(format!("threshold {v}"));
    }
    if let Some(v) = t.max_slope_per_minute {
        limits.push(format!("max slope per minute {v}"));
    }
    limits.push(format!("confidence {}", t.confidence));
    limits.push(format!("min samples {}", t.min_samples));
    row("settings", limits.join(", "));
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<12}{:>14}{:>14}", "", "baseline", "canary");
    type Getter = fn(&SideSummary) -> Option<f64>;
    let side_rows: [(&str, Getter); 11] = [
        ("points", |s| Some(s.points as f64)),
        ("dropped", |s| Some(s.dropped as f64)),
        ("mean", |s| s.mean),
        ("median", |s| s.median),
        ("p90", |s| s.p90),
        ("p99", |s| s.p99),
        ("aggregate", |s| s.aggregate.map(|a| a.value)),
        ("errors", |s| s.errors),
        ("total", |s| s.total),
        ("rate", |s| s.rate),
        ("slope/min", |s| s.slope_per_minute),
    ];
    for (label, get) in side_rows {
        let (b, c) = (get(&e.baseline), get(&e.canary));
        if b.is_none() && c.is_none() {
            continue;
        }
        let _ = writeln!(out, "{label:<12}{:>14}{:>14}", num(b), num(c));
    }
    out
}

/// Run `canaryd judge`.
pub fn run(args: JudgeArgs) -> ExitCode {
    let result = match judge_files(&args) {
        Ok(r) => r,
        Err(err) => {
            if args.output == OutputArg::Json {
                // As the control commands report failures with `--output json`.
                let failure =
                    super::client::Failure::new(super::client::FailureKind::Usage, err.to_string());
                return failure.report(super::client::Output::Json);
            }
            eprintln!("error: {err}");
            return ExitCode::from(super::USAGE_ERROR);
        }
    };
    match args.output {
        OutputArg::Json => match serde_json::to_string_pretty(&json_report(&result)) {
            Ok(s) => println!("{s}"),
            Err(err) => {
                eprintln!("error: cannot encode the result as JSON: {err}");
                return ExitCode::from(super::USAGE_ERROR);
            }
        },
        OutputArg::Table => print!("{}", table_report(&result)),
    }
    ExitCode::from(match result.verdict {
        Verdict::Pass => 0,
        Verdict::Fail => 1,
        Verdict::Inconclusive { .. } => 2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_three_shapes_with_header_comments_and_blanks() {
        let plain = parse_data("a", "# latency\nvalue\n1.5\n\n2\nNaN\n").unwrap();
        match plain {
            DataFile::Plain(v) => {
                assert_eq!(v.len(), 3);
                assert!(v[2].is_nan());
            }
            other => panic!("{other:?}"),
        }
        let timed = parse_data("a", "timestamp,value\n60,1\n120, inf\n").unwrap();
        assert!(matches!(timed, DataFile::Timed(ref p) if p.len() == 2 && p[1].v.is_infinite()));
        let counts = parse_data("a", "t,errors,total\n2024-01-01T00:00:00Z,1,100\n").unwrap();
        match counts {
            DataFile::Counts(c) => assert_eq!(c[0].t, 1_704_067_200.0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_value_names_file_line_and_text() {
        let err = parse_data("canary.csv", "t,v\n1,2\n\n# x\n2,3\n3,4\n4,abc\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "canary.csv:7: expected a number, found `abc`"
        );
        let err = parse_data("c.csv", "1,2\n1,2,3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.csv:2: expected 2 fields (timestamp,value) like line 1, found 3"
        );
        let err = parse_data("c.csv", "1,5,3\n").unwrap_err();
        assert_eq!(err.to_string(), "c.csv:1: errors (5) exceed total (3)");
        let err = parse_data("c.csv", "abc\n").unwrap_err();
        assert_eq!(err.to_string(), "c.csv:1: expected a number, found `abc`");
    }

    #[test]
    fn aggregates_parse() {
        assert_eq!(parse_aggregate("p99"), Ok(Aggregate::Quantile(0.99)));
        assert_eq!(parse_aggregate("q0.5"), Ok(Aggregate::Quantile(0.5)));
        assert_eq!(parse_aggregate("Max"), Ok(Aggregate::Max));
        assert!(parse_aggregate("p101").is_err());
        assert!(parse_aggregate("mode").is_err());
    }
}
