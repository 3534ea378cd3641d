//! `canaryd replay`: run a rule's rollout again over recorded data (`--data DIR`) or over its own
//! Prometheus history (`--from T1 --to T2`), on simulated time, and show the decisions it makes.
//! This file parses the arguments, picks the source (the recorded files, or the rule's
//! Prometheus from `--source URL` or the daemon config), hands them to [`crate::replay::replay`],
//! and prints the timeline as a table or as JSON (`{"phase", "analyses", "decisions"}`). Exit
//! codes: 0 the replay ran (whatever the rollout's phase), 3 bad usage or input (a rule, a data
//! file, a time), 4 the metric backend failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::Args;

use crate::cli::USAGE_ERROR;
use crate::cli::client::{Output, table};
use crate::config::{self, SourceConfig};
use crate::replay::{self, Options, Replay, ReplayError};
use crate::rollout::CheckVerdict;
use crate::rules::{KnownNames, RolloutRule};
use crate::source::{MetricSource, PrometheusConfig, PrometheusSource};

/// Exit code when the metric backend failed during the replay.
const BACKEND_ERROR: u8 = 4;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The rule file whose rollout is replayed.
    #[arg(long, value_name = "FILE")]
    pub rule: PathBuf,
    /// A directory of recorded data: CHECK.baseline.csv and CHECK.canary.csv for every check
    /// (`timestamp,value`, or `timestamp,errors,total` for error-rate kinds; unix seconds).
    #[arg(long, value_name = "DIR", required_unless_present = "from", conflicts_with_all = ["from", "source", "config"])]
    pub data: Option<PathBuf>,
    /// When the run starts (RFC 3339 or unix seconds) [default: the earliest recorded point].
    #[arg(long, value_name = "TIME", requires = "data")]
    pub start: Option<String>,
    /// Replay over the rule's Prometheus history from this time (RFC 3339 or unix seconds).
    #[arg(long, value_name = "TIME", requires = "to")]
    pub from: Option<String>,
    /// ... to this time.
    #[arg(long, value_name = "TIME", requires = "from")]
    pub to: Option<String>,
    /// The Prometheus to ask (its base URL) instead of the rule's source in the daemon config.
    #[arg(long, value_name = "URL", requires = "from", conflicts_with = "config")]
    pub source: Option<String>,
    /// The daemon config holding the rule's source [default: /etc/canaryd/canaryd.toml].
    #[arg(long, value_name = "FILE", requires = "from")]
    pub config: Option<PathBuf>,
    /// Approve every approval gate at once (without it the replay stops at the first gate).
    #[arg(long)]
    pub approve: bool,
    /// `table` for people, `json` for scripts.
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// Also list every analysis (time, stage, weight, outcome, the checks without a pass) after
    /// the decisions, in the table.
    #[arg(long)]
    pub analyses: bool,
}

/// Why the replay did not run, and the exit code that says so.
struct Failure(u8, String);

/// Run `canaryd replay`.
pub fn run(args: ReplayArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(Failure(USAGE_ERROR, format!("cannot start: {e}"))),
    };
    let (output, analyses) = (args.output, args.analyses);
    match runtime.block_on(replayed(args)) {
        Ok((rule, replay)) => {
            match output {
                Output::Json => match serde_json::to_string_pretty(&replay) {
                    Ok(json) => println!("{json}"),
                    Err(e) => return fail(Failure(USAGE_ERROR, e.to_string())),
                },
                Output::Table => {
                    print!("{}", table_report(&rule, &replay));
                    if analyses {
                        print!("\n{}", analyses_table(&replay));
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(failure) => fail(failure),
    }
}

fn fail(Failure(code, message): Failure) -> ExitCode {
    eprintln!("canaryd: {message}");
    ExitCode::from(code)
}

async fn replayed(args: ReplayArgs) -> Result<(RolloutRule, Replay), Failure> {
    let usage = |message: String| Failure(USAGE_ERROR, message);
    let rule = load_rule(&args.rule).map_err(usage)?;
    let (source, options): (Arc<dyn MetricSource>, Options) = match &args.data {
        Some(dir) => {
            let data = replay::load(&rule, dir).map_err(|e| usage(e.to_string()))?;
            let start = match &args.start {
                Some(text) => time(text, "--start").map_err(usage)?,
                None => data.first,
            };
            let options = Options {
                start,
                end: data.last,
                approve: args.approve,
                judging: replay::Judging::Staged,
            };
            (Arc::new(data.source), options)
        }
        None => {
            let (Some(from), Some(to)) = (&args.from, &args.to) else {
                return Err(usage("give --data DIR, or --from and --to".into()));
            };
            let options = Options {
                start: time(from, "--from").map_err(usage)?,
                end: time(to, "--to").map_err(usage)?,
                approve: args.approve,
                judging: replay::Judging::Staged,
            };
            (prometheus(&args, &rule).map_err(usage)?, options)
        }
    };
    let replay = replay::replay(&rule, source, &options)
        .await
        .map_err(|e| match e {
            ReplayError::Source { .. } => Failure(BACKEND_ERROR, e.to_string()),
            _ => usage(e.to_string()),
        })?;
    Ok((rule, replay))
}

/// The one rollout of the rule file, validated as `canaryd check` would (without a daemon config:
/// source, actuator and receiver names are not checked), or every problem found in it.
fn load_rule(path: &std::path::Path) -> Result<RolloutRule, String> {
    let rules = crate::rules::load_paths(&[path.to_path_buf()], &KnownNames::any()).map_err(
        |problems| {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            list.join("\n")
        },
    )?;
    rules
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no rule file there", path.display()))
}

/// The rule's Prometheus: `--source URL`, or the rule's source in the daemon config.
fn prometheus(args: &ReplayArgs, rule: &RolloutRule) -> Result<Arc<dyn MetricSource>, String> {
    let settings = match &args.source {
        Some(url) => PrometheusConfig::new(url.clone()),
        None => {
            let path = args
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from(crate::cli::check::DEFAULT_CONFIG));
            let config = config::load(&path).map_err(|e| e.to_string())?;
            match config.sources.get(&rule.source) {
                Some(SourceConfig::Prometheus(c)) => c.clone(),
                None => {
                    return Err(format!(
                        "{}: no source `{}` (the rule's `source`); give --source URL",
                        path.display(),
                        rule.source
                    ));
                }
            }
        }
    };
    let source =
        PrometheusSource::new(rule.source.clone(), &settings).map_err(|e| e.to_string())?;
    Ok(Arc::new(source))
}

/// A time given as RFC 3339 or unix seconds.
fn time(text: &str, flag: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    text.parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| {
            format!(
                "{flag} `{text}` is not a time: use RFC 3339 (2026-03-01T10:00:00Z) or unix seconds"
            )
        })
}

/// The timeline for people: a line saying how it ended, then one row per decision.
pub fn table_report(rule: &RolloutRule, replay: &Replay) -> String {
    let reason = match &replay.state.phase {
        crate::rollout::Phase::Paused { reason, .. }
        | crate::rollout::Phase::RolledBack { reason } => format!(": {reason}"),
        crate::rollout::Phase::WaitingApproval { .. } => {
            ": waiting for approval (--approve approves every gate)".to_string()
        }
        crate::rollout::Phase::Progressing { .. } => {
            format!(": the data end at {}", replay.stopped_at.to_rfc3339())
        }
        _ => String::new(),
    };
    let mut out = format!(
        "{}: {} after {} analyses, at {}% at {}{reason}\n",
        rule.name,
        replay.phase,
        replay.analyses,
        replay.state.weight,
        replay.stopped_at.to_rfc3339(),
    );
    let rows: Vec<Vec<String>> = replay
        .decisions
        .iter()
        .map(|d| {
            vec![
                d.time.to_rfc3339(),
                word(&d.action),
                d.stage.clone().unwrap_or_default(),
                format!("{}%", d.weight),
                d.checks.join(", "),
                d.reason.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["time", "action", "stage", "weight", "checks", "reason"],
        &rows,
    ));
    out
}

/// Every analysis: when, where, its outcome, and the checks that did not pass (with their verdict).
pub fn analyses_table(replay: &Replay) -> String {
    let rows: Vec<Vec<String>> = replay
        .log
        .iter()
        .map(|a| {
            let checks: Vec<String> = a
                .report
                .checks
                .iter()
                .filter_map(|c| match c.verdict {
                    CheckVerdict::Pass => None,
                    CheckVerdict::Fail => Some(format!("{}: fail", c.check)),
                    CheckVerdict::Inconclusive { cause } => {
                        Some(format!("{}: {}", c.check, word(&cause)))
                    }
                })
                .collect();
            vec![
                a.time.to_rfc3339(),
                a.stage.clone().unwrap_or_default(),
                format!("{}%", a.weight),
                word(&a.report.overall),
                checks.join(", "),
            ]
        })
        .collect();
    table(
        &[
            "analysis",
            "stage",
            "weight",
            "outcome",
            "checks not passing",
        ],
        &rows,
    )
}

/// A kebab-case enum as its one word (`rolled-back`, `no-data`).
fn word(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
