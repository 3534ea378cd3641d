//! The control commands, clients of a running daemon's HTTP API: `status`, `history`,
//! `compare`, the rollout commands (`start`, `approve`, `pause`, `resume`, `promote`,
//! `rollback`, `abort`) and `emergency-stop`. Each builds one request, sends it through
//! [`client`](super::client) and shows the answer as a table (or the API's JSON with
//! `--output json`). They decide nothing: the daemon does.
//!
//! Exit codes: 0 done; 1 the daemon refused (4xx), with its message; 3 bad usage or an
//! unreadable token file; 4 the daemon cannot be reached; 5 the daemon failed (5xx). With
//! `--output json` a failure is one JSON object on stderr, with the same exit code.

use std::process::ExitCode;

use clap::Args;
use serde_json::{Value, json};

use super::client::{Conn, Failure, Output, table};
use crate::readout::{self, LimitKind};

const EXIT_CODES: &str = "Exit codes: 0 done; 1 the daemon refused (4xx), its message is printed; \
3 bad usage or an unreadable token file; 4 the daemon cannot be reached; 5 the daemon failed (5xx).";

/// `canaryd status [NAME]`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct StatusArgs {
    /// One rollout in detail (its plan and progress); all of them when absent.
    pub name: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `canaryd history NAME`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct HistoryArgs {
    pub name: String,
    /// Entries per page, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Continue after a previous page (the cursor it printed).
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// `canaryd compare NAME`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct CompareArgs {
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `canaryd pause|resume|... NAME --reason TEXT`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct CommandArgs {
    /// The rollout.
    pub name: String,
    /// Why, for the audit trail and the notifications.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `canaryd start NAME [--canary VERSION] --reason TEXT`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct StartArgs {
    #[command(flatten)]
    pub command: CommandArgs,
    /// The canary version of the new run (substituted for `{{side}}` in the canary's queries);
    /// the current run's version when left out.
    #[arg(long)]
    pub canary: Option<String>,
}

/// `canaryd emergency-stop [--clear] --reason TEXT`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct EmergencyArgs {
    /// Lift the stop (rollouts stay paused until resumed) instead of engaging it.
    #[arg(long)]
    pub clear: bool,
    /// Why, for the audit trail.
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub conn: Conn,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn number(v: &Value) -> String {
    match v.as_f64() {
        None => "-".to_string(),
        Some(x) if x != 0.0 && (x.abs() < 0.001 || x.abs() >= 1e6) => format!("{x:.3e}"),
        Some(x) => {
            let s = format!("{x:.4}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

fn duration(v: &Value) -> String {
    match v.as_f64() {
        None => "-".to_string(),
        Some(s) if s >= 3600.0 => format!("{:.1}h", s / 3600.0),
        Some(s) if s >= 60.0 => format!("{:.1}m", s / 60.0),
        Some(s) => format!("{s:.0}s"),
    }
}

/// Show an answer: the JSON as is, or the table `show` makes of it.
fn finish(
    conn: &Conn,
    answer: Result<Value, Failure>,
    show: impl FnOnce(&Value) -> String,
) -> ExitCode {
    match answer {
        Err(f) => f.report(conn.output),
        Ok(v) => {
            match conn.output {
                Output::Json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
                    )
                }
                Output::Table => print!("{}", show(&v)),
            }
            ExitCode::SUCCESS
        }
    }
}

/// A rollout name as one segment of an API path.
pub fn segment(name: &str) -> String {
    // Rollout names are plain identifiers; escape the few characters that would break a path.
    name.replace('%', "%25")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('#', "%23")
}

pub fn status(args: StatusArgs) -> ExitCode {
    match &args.name {
        None => {
            let answer = args
                .conn
                .request(reqwest::Method::GET, "/v1/rollouts", None);
            finish(&args.conn, answer, |v| {
                let rows: Vec<Vec<String>> = v["rollouts"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|r| {
                        vec![
                            text(&r["name"]),
                            text(&r["phase"]),
                            text(&r["stage_name"]),
                            format!("{}%", text(&r["weight"])),
                        ]
                    })
                    .collect();
                table(&["ROLLOUT", "PHASE", "STAGE", "WEIGHT"], &rows)
            })
        }
        Some(name) => {
            let path = format!("/v1/rollouts/{}", segment(name));
            let answer = args.conn.request(reqwest::Method::GET, &path, None);
            finish(&args.conn, answer, show_detail)
        }
    }
}

fn show_detail(v: &Value) -> String {
    let mut out = format!(
        "{}: {} at {}% (stage {})\n",
        text(&v["name"]),
        text(&v["phase"]),
        text(&v["weight"]),
        text(&v["stage_name"])
    );
    if !v["phase_reason"].is_null() {
        out.push_str(&format!("  why:            {}\n", text(&v["phase_reason"])));
    }
    out.push_str(&format!("  started:        {}\n", text(&v["started_at"])));
    out.push_str(&format!(
        "  stage began:    {}\n",
        text(&v["last_advanced_at"])
    ));
    out.push_str(&format!(
        "  last analysis:  {}\n",
        text(&v["last_analysis_at"])
    ));
    out.push_str(&format!(
        "  next analysis:  {}\n\n",
        text(&v["next_analysis_at"])
    ));
    let rows: Vec<Vec<String>> = v["plan"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let passes = passes_cell(s);
            vec![
                text(&s["name"]),
                format!("{}%", text(&s["weight"])),
                text(&s["status"]),
                passes,
                format!(
                    "{}/{}",
                    duration(&s["time_in_stage_seconds"]),
                    duration(&s["min_duration_seconds"])
                ),
                if s["approval"] == true { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "STAGE", "WEIGHT", "STATUS", "PASSES", "TIME/MIN", "APPROVAL",
        ],
        &rows,
    ));
    out
}

pub fn history(args: HistoryArgs) -> ExitCode {
    let mut path = format!(
        "/v1/rollouts/{}/history?limit={}",
        segment(&args.name),
        args.limit
    );
    if let Some(c) = &args.cursor {
        path.push_str(&format!("&cursor={}", segment(c)));
    }
    let answer = args.conn.request(reqwest::Method::GET, &path, None);
    finish(&args.conn, answer, |v| {
        let rows: Vec<Vec<String>> = v["entries"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                vec![
                    text(&e["at"]),
                    text(&e["action"]),
                    format!("{}→{}", text(&e["previous_weight"]), text(&e["new_weight"])),
                    text(&e["triggered_by"]),
                    text(&e["reason"]),
                ]
            })
            .collect();
        let mut out = table(&["AT", "ACTION", "WEIGHT", "BY", "REASON"], &rows);
        if let Some(next) = v["next_cursor"].as_str() {
            out.push_str(&format!("(more: --cursor {next})\n"));
        }
        out
    })
}

/// A comparison's limit kind (`threshold_kind`: `tolerance`, `threshold`, `max slope per
/// minute`).
fn limit_kind(c: &Value) -> Option<LimitKind> {
    match c["threshold_kind"].as_str()? {
        "tolerance" => Some(LimitKind::Tolerance),
        "threshold" => Some(LimitKind::Threshold),
        "max slope per minute" => Some(LimitKind::MaxSlopePerMinute),
        _ => None,
    }
}

/// The EFFECT cell of one check of a comparison, in the unit of its limit (`+0.28 pp` for an
/// error rate, `+12.5%` against a relative tolerance, `+0.4` beyond a threshold).
fn effect_cell(c: &Value) -> String {
    readout::effect(
        c["measure"] == "error rate",
        limit_kind(c),
        c["effect_ratio"].as_f64(),
        c["effect_difference"].as_f64(),
    )
}

/// The THRESHOLD cell: `tolerance 1 pp`, `tolerance 10%`, `threshold 0.5`.
fn limit_cell(c: &Value) -> String {
    match (limit_kind(c), c["threshold"].as_f64()) {
        (Some(kind), Some(value)) => readout::limit(c["measure"] == "error rate", kind, value),
        _ => "-".to_string(),
    }
}

/// The BOUND cell: the confidence bound on the worsening the verdict rested on, in the unit of
/// the check's limit (`+4.2%` against a relative tolerance, `+0.31 pp` against an error rate's,
/// `0.42%` against a rate threshold), with the rule that decided (`within`, `beyond`, `not
/// shown`): how close a staged check's evidence is to a decision. `-` when none was computed.
fn bound_cell(c: &Value) -> String {
    let Some(bound) = c["bound"].as_f64() else {
        return "-".to_string();
    };
    let is_rate = c["measure"] == "error rate";
    let value = match limit_kind(c) {
        Some(LimitKind::Tolerance) if is_rate => readout::percentage_points(bound),
        Some(LimitKind::Tolerance) => readout::percent_change(bound),
        Some(LimitKind::Threshold) if is_rate => readout::rate(bound),
        _ => readout::short(bound),
    };
    let rule = match c["decided_by"].as_str() {
        Some("shown-within") => " (within)",
        Some("shown-beyond") => " (beyond)",
        Some("not-shown") => " (not shown)",
        _ => "",
    };
    format!("{value}{rule}")
}

/// The PASSES cell of a stage: passes counted of those needed. Passes go on being counted
/// while the stage's minimum duration runs, so more than needed reads as met, not `12/1`.
fn passes_cell(s: &Value) -> String {
    let required = s["passes_required"].as_u64();
    match (s["passes_seen"].as_u64(), required) {
        (Some(seen), Some(req)) if seen > req => format!("{req}/{req}, met ({seen} in a row)"),
        (Some(seen), Some(req)) => format!("{seen}/{req}"),
        (None, _) => format!("-/{}", text(&s["passes_required"])),
        (Some(seen), None) => seen.to_string(),
    }
}

pub fn compare(args: CompareArgs) -> ExitCode {
    let path = format!("/v1/rollouts/{}/comparison", segment(&args.name));
    let answer = args.conn.request(reqwest::Method::GET, &path, None);
    finish(&args.conn, answer, |v| {
        let rows: Vec<Vec<String>> = v["checks"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| {
                let measure = c["measure"]
                    .as_str()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                let is_rate = c["measure"] == "error rate";
                let side = |v: &Value| match (is_rate, v.as_f64()) {
                    (true, Some(r)) => readout::rate(r),
                    _ => number(v),
                };
                vec![
                    format!("{}{measure}", text(&c["check"])),
                    side(&c["baseline"]),
                    side(&c["canary"]),
                    effect_cell(c),
                    limit_cell(c),
                    bound_cell(c),
                    text(&c["verdict"]),
                ]
            })
            .collect();
        let mut out = format!(
            "{}: analysis {} at {}: {} (score {})\n",
            text(&v["rollout"]),
            text(&v["analysis_id"]),
            text(&v["at"]),
            text(&v["outcome"]),
            number(&v["score"])
        );
        out.push_str(&table(
            &[
                "CHECK",
                "BASELINE (LEGACY)",
                "CANARY (NEW)",
                "EFFECT",
                "THRESHOLD",
                "BOUND",
                "VERDICT",
            ],
            &rows,
        ));
        out
    })
}

/// Give a rollout command.
pub fn command(verb: &str, args: CommandArgs) -> ExitCode {
    send(verb, args, None)
}

/// `canaryd start NAME [--canary VERSION] --reason TEXT`: a new run of the rollout.
pub fn start(args: StartArgs) -> ExitCode {
    send("start", args.command, args.canary)
}

fn send(verb: &str, args: CommandArgs, canary: Option<String>) -> ExitCode {
    let path = format!("/v1/rollouts/{}/{verb}", segment(&args.name));
    let mut body = json!({ "reason": args.reason });
    if let Some(canary) = canary {
        body["canary"] = json!(canary);
    }
    let answer = args.conn.request(reqwest::Method::POST, &path, Some(body));
    let started = verb == "start";
    finish(&args.conn, answer, |v| {
        let run = match started {
            true => format!(" run {} (canary {})", text(&v["run"]), text(&v["canary"])),
            false => String::new(),
        };
        format!(
            "{}:{run} {} at {}% (stage {}), by {}\n",
            text(&v["rollout"]),
            text(&v["phase"]),
            text(&v["weight"]),
            text(&v["stage_name"]),
            text(&v["by"])
        )
    })
}

pub fn emergency(args: EmergencyArgs) -> ExitCode {
    let method = if args.clear {
        reqwest::Method::DELETE
    } else {
        reqwest::Method::POST
    };
    let answer = args.conn.request(
        method,
        "/v1/emergency-stop",
        Some(json!({ "reason": args.reason })),
    );
    finish(&args.conn, answer, |v| {
        if v["active"] == true {
            "Emergency stop engaged: every rollout goes to 0%.\n".to_string()
        } else {
            "Emergency stop cleared: rollouts stay paused until resumed.\n".to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::{CheckKind, CheckSpec, CountPoint, Direction, SideData, judge_check};

    /// The comparison the API gives for one check judged on `baseline` and `canary`.
    fn compared(kind: CheckKind, baseline: SideData, canary: SideData) -> Value {
        let spec = CheckSpec {
            name: "errors".into(),
            kind,
            direction: Direction::HigherIsWorse,
            confidence: 0.99,
            min_samples: 3,
        };
        let result = judge_check(&spec, &baseline, &canary);
        let analysis = crate::store::Analysis {
            run: 1,
            id: 1,
            rollout: "shop".into(),
            at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            outcome: "fail".into(),
            score: None,
            evidence: json!({ "checks": [result] }),
        };
        let c = crate::api::view::comparison(&analysis).unwrap();
        serde_json::to_value(&c.checks[0]).unwrap()
    }

    fn counts(errors: f64, total: f64) -> SideData {
        SideData::Counts(
            (0..30)
                .map(|i| CountPoint {
                    t: f64::from(i) * 60.0,
                    errors,
                    total,
                })
                .collect(),
        )
    }

    #[test]
    fn an_error_rate_effect_reads_in_percentage_points_like_its_tolerance() {
        // 0.5% against 0.78% errors: the raw difference was printed as `+0.0028...`, and with a
        // baseline without errors as `+0.0027683643974882885`.
        let c = compared(
            CheckKind::ErrorRate { tolerance: 0.01 },
            counts(5.0, 1000.0),
            counts(7.8, 1000.0),
        );
        assert_eq!(effect_cell(&c), "+0.28 pp");
        assert_eq!(limit_cell(&c), "tolerance 1 pp");
        let c = compared(
            CheckKind::ErrorRate { tolerance: 0.01 },
            counts(0.0, 1000.0),
            counts(2.768_364_397_488_288_5, 1000.0),
        );
        assert_eq!(effect_cell(&c), "+0.28 pp");
    }

    #[test]
    fn more_passes_than_needed_read_as_met() {
        let stage = |seen: u64, req: u64| json!({"passes_seen": seen, "passes_required": req});
        assert_eq!(passes_cell(&stage(12, 1)), "1/1, met (12 in a row)");
        assert_eq!(passes_cell(&stage(1, 3)), "1/3");
        assert_eq!(
            passes_cell(&json!({"passes_seen": null, "passes_required": 2})),
            "-/2"
        );
    }

    /// `compare`'s BOUND column: how close a staged check is to a decision, in its limit's unit.
    #[test]
    fn the_bound_cell_shows_the_bound_in_the_limits_unit_with_the_rule() {
        let relative = json!({"measure": "p99", "threshold_kind": "tolerance", "bound": 1.042,
            "decided_by": "not-shown"});
        assert_eq!(bound_cell(&relative), "+4.2% (not shown)");
        let errors = json!({"measure": "error rate", "threshold_kind": "tolerance",
            "bound": 0.0031, "decided_by": "shown-within"});
        assert_eq!(bound_cell(&errors), "+0.31 pp (within)");
        let none = json!({"measure": "p99", "threshold_kind": "threshold", "bound": null});
        assert_eq!(bound_cell(&none), "-");
    }
}
