//! `canaryd export NAME [--analysis ID]`: write the data one analysis judged (the latest, or the
//! one given) as a directory `canaryd replay --data` reads: `CHECK.baseline.csv` and
//! `CHECK.canary.csv` for every check.
//! The data come from the daemon's API (`GET /v1/rollouts/NAME/analyses`), which gives what an
//! analysis records: each side's chart line (one point per step of the window, times to the
//! millisecond, values to 4 significant digits; a window of 60 points or more averaged down to
//! 30–59) and each check's evidence (for error counts, the window's summed errors and requests).
//! The raw points are not stored, so the export is that record: values as charted, and counts
//! rebuilt from the charted per-step rates with the window's summed requests split evenly over
//! the steps and the errors scaled to the recorded sum (each side's sums, which the error-rate
//! tests judge, are exact; the split over steps is not). What was approximated is said on
//! standard error.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::cli::client::{Conn, Output, exit};
use crate::judge::CheckResult;
use crate::rules::Side;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The rollout.
    pub name: String,
    /// The analysis to export (its id, as `canaryd history` and the API show) [default: the
    /// latest of the current run].
    #[arg(long, value_name = "ID")]
    pub analysis: Option<i64>,
    /// The directory to write (created if needed; files of the same names are replaced)
    /// [default: NAME-analysis-ID].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The daemon's base URL [env: CANARYD_URL] [default: http://127.0.0.1:9797].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the API token (first line). Otherwise CANARYD_TOKEN; reads on loopback
    /// need none.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// An analysis as the API lists it.
#[derive(Debug, Deserialize)]
struct Listed {
    id: i64,
    at: String,
    outcome: String,
    evidence: Recorded,
}

/// The part of an analysis's evidence the export reads.
#[derive(Debug, Deserialize)]
struct Recorded {
    checks: Vec<CheckResult>,
    #[serde(default)]
    series: Vec<Charted>,
}

/// One check's chart lines: `[[dt, value], ...]` after `t0` (absolute times without `t0`).
#[derive(Debug, Deserialize)]
struct Charted {
    check: String,
    #[serde(default)]
    t0: f64,
    baseline: Vec<(f64, Option<f64>)>,
    canary: Vec<(f64, Option<f64>)>,
}

/// One file to write: its name and text, and what was approximated in it.
#[derive(Debug, PartialEq)]
pub struct Exported {
    pub file: String,
    pub text: String,
    pub notes: Vec<String>,
}

/// Run `canaryd export`.
pub fn run(args: ExportArgs) -> ExitCode {
    let conn = Conn {
        url: args.url.clone(),
        token_file: args.token_file.clone(),
        output: Output::Table,
    };
    let mut path = format!(
        "/v1/rollouts/{}/analyses?run=all&limit=1",
        crate::cli::control::segment(&args.name)
    );
    if let Some(id) = args.analysis {
        // Pages list newest first, below the cursor: the page below ID + 1 starts at ID.
        let _ = write!(path, "&cursor={}", id.saturating_add(1).max(1));
    }
    let answer = match conn.request(reqwest::Method::GET, &path, None) {
        Ok(answer) => answer,
        Err(failure) => return failure.report(conn.output),
    };
    let listed = answer
        .get("analyses")
        .and_then(Value::as_array)
        .and_then(|items| items.first());
    let Some(listed) = listed else {
        eprintln!("canaryd: rollout `{}` has no analysis yet", args.name);
        return ExitCode::from(exit::REFUSED);
    };
    let listed: Listed = match serde_json::from_value(listed.clone()) {
        Ok(listed) => listed,
        Err(e) => {
            eprintln!("canaryd: the daemon's analysis is not in the shape canaryd records: {e}");
            return ExitCode::from(exit::DAEMON_ERROR);
        }
    };
    if let Some(id) = args.analysis
        && listed.id != id
    {
        eprintln!("canaryd: rollout `{}` has no analysis {id}", args.name);
        return ExitCode::from(exit::REFUSED);
    }
    let files = match files(&listed.evidence) {
        Ok(files) => files,
        Err(message) => {
            eprintln!("canaryd: analysis {}: {message}", listed.id);
            return ExitCode::from(exit::DAEMON_ERROR);
        }
    };
    let dir = args
        .dir
        .unwrap_or_else(|| PathBuf::from(format!("{}-analysis-{}", args.name, listed.id)));
    if let Err(e) = write(&dir, &files) {
        eprintln!("canaryd: {e}");
        return ExitCode::from(exit::USAGE);
    }
    for note in files.iter().flat_map(|f| &f.notes) {
        eprintln!("note: {note}");
    }
    println!(
        "wrote {} files to {}: analysis {} of `{}` at {} ({}), as recorded (values to 4 \
         significant digits); replay it with `canaryd replay --rule RULE --data {}`",
        files.len(),
        dir.display(),
        listed.id,
        args.name,
        listed.at,
        listed.outcome,
        dir.display()
    );
    ExitCode::SUCCESS
}

fn write(dir: &Path, files: &[Exported]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for f in files {
        let path = dir.join(&f.file);
        std::fs::write(&path, &f.text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The files of one recorded analysis, two per charted check. Pure.
fn files(recorded: &Recorded) -> Result<Vec<Exported>, String> {
    let mut out = Vec::new();
    for chart in &recorded.series {
        let name = &chart.check;
        // The names come from the daemon: never let one reach outside the directory.
        let safe = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !safe {
            return Err(format!("the check name `{name}` cannot be a file name"));
        }
        let result = recorded.checks.iter().find(|c| c.name == *name);
        for (side, line) in [
            (Side::Baseline, &chart.baseline),
            (Side::Canary, &chart.canary),
        ] {
            let summary = result.map(|r| match side {
                Side::Baseline => &r.evidence.baseline,
                Side::Canary => &r.evidence.canary,
            });
            let file = crate::replay::data::file_name(name, side);
            let times: Vec<f64> = line
                .iter()
                .map(|(dt, _)| ((chart.t0 + dt) * 1000.0).round() / 1000.0)
                .collect();
            let mut notes = Vec::new();
            let raw = summary.map_or(0, |s| s.points + s.dropped);
            if raw > line.len() {
                notes.push(format!(
                    "{file}: the analysis judged {raw} points and recorded {} averaged ones; \
                     these are what it recorded",
                    line.len()
                ));
            }
            let text = match summary.and_then(|s| s.errors.zip(s.total)) {
                Some((errors, total)) => counts(&times, line, errors, total),
                None if line.is_empty() => "# no points were recorded\n".to_string(),
                None => {
                    let mut text = String::from("timestamp,value\n");
                    for (t, (_, v)) in times.iter().zip(line) {
                        let _ = writeln!(text, "{t},{}", v.unwrap_or(f64::NAN));
                    }
                    text
                }
            };
            out.push(Exported { file, text, notes });
        }
    }
    Ok(out)
}

/// `timestamp,errors,total` lines rebuilt from per-step rates and the window's sums: the
/// requests split evenly over the steps with a rate, the errors in proportion to the rates and
/// scaled to sum to `errors`; a step without a rate (no requests) is `0,0`.
fn counts(times: &[f64], line: &[(f64, Option<f64>)], errors: f64, total: f64) -> String {
    let rated = line.iter().filter(|(_, r)| r.is_some()).count();
    let per_step = if rated > 0 { total / rated as f64 } else { 0.0 };
    let weighted: f64 = line.iter().filter_map(|(_, r)| *r).sum::<f64>() * per_step;
    let scale = if weighted > 0.0 {
        errors / weighted
    } else {
        0.0
    };
    let mut text = String::from("timestamp,errors,total\n");
    for (t, (_, rate)) in times.iter().zip(line) {
        match rate {
            Some(r) => {
                let e = (r * per_step * scale).clamp(0.0, per_step);
                let _ = writeln!(text, "{t},{e},{per_step}");
            }
            None => {
                let _ = writeln!(text, "{t},0,0");
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_the_window_sums_and_follow_the_rates() {
        let line = [(0.0, Some(0.01)), (60.0, None), (120.0, Some(0.03))];
        let text = counts(&[100.0, 160.0, 220.0], &line, 20.0, 1000.0);
        assert_eq!(
            text,
            "timestamp,errors,total\n100,5,500\n160,0,0\n220,15,500\n"
        );
        // No errors at all, and no rates at all.
        let none = counts(&[100.0], &[(0.0, Some(0.0))], 0.0, 300.0);
        assert_eq!(none, "timestamp,errors,total\n100,0,300\n");
        let empty = counts(&[100.0], &[(0.0, None)], 0.0, 0.0);
        assert_eq!(empty, "timestamp,errors,total\n100,0,0\n");
    }

    /// An error-rate check's analysis, recorded as the daemon records it (its evidence and its
    /// chart lines), exported: the files read back as counts whose sums are the judged ones.
    #[test]
    fn an_exported_error_rate_check_reads_back_with_the_judged_sums() {
        use crate::daemon::analysis::{ChartSeries, plotted};
        use crate::judge::{CheckKind, CheckSpec, CountPoint, Direction, SideData, judge_check};
        use crate::source::recorded::{Recorded as Read, parse};
        let side = |errors: &[f64], total: f64| {
            SideData::Counts(
                errors
                    .iter()
                    .enumerate()
                    .map(|(i, &e)| CountPoint {
                        t: 1_700_000_000.0 + 60.0 * i as f64,
                        errors: e,
                        total,
                    })
                    .collect(),
            )
        };
        let baseline = side(&[1.0, 0.0, 2.0, 1.0], 1000.0);
        let canary = side(&[7.0, 9.0, 0.0, 3.0], 400.0);
        let spec = CheckSpec {
            name: "errors".into(),
            kind: CheckKind::ErrorRate { tolerance: 0.01 },
            direction: Direction::HigherIsWorse,
            confidence: 0.99,
            min_samples: 100,
        };
        let result = judge_check(&spec, &baseline, &canary);
        let chart = ChartSeries::new("errors", plotted(&baseline), plotted(&canary));
        let recorded: Recorded = serde_json::from_value(serde_json::json!({
            "checks": [result],
            "series": [chart],
        }))
        .unwrap();
        let files = files(&recorded).unwrap();
        assert_eq!(files.len(), 2);
        for (file, (errors, total)) in files.iter().zip([(4.0, 4000.0), (19.0, 1600.0)]) {
            let Read::Counts(points) = parse(Path::new(&file.file), &file.text, true).unwrap()
            else {
                panic!("{}", file.text);
            };
            assert_eq!(points.len(), 4, "{}", file.text);
            assert_eq!(points[1].t, 1_700_000_060.0);
            let sum = |f: fn(&CountPoint) -> f64| points.iter().map(f).sum::<f64>();
            assert!((sum(|p| p.errors) - errors).abs() < 1e-9, "{}", file.text);
            assert!((sum(|p| p.total) - total).abs() < 1e-9, "{}", file.text);
        }
        assert_eq!(files[1].file, "errors.canary.csv");
    }

    #[test]
    fn a_check_name_that_is_not_a_file_name_is_refused() {
        let recorded: Recorded = serde_json::from_value(serde_json::json!({
            "checks": [],
            "series": [{"check": "../etc/x", "t0": 0, "baseline": [], "canary": []}],
        }))
        .unwrap();
        assert!(files(&recorded).unwrap_err().contains("`../etc/x`"));
    }
}
