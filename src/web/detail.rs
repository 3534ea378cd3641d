//! `GET /rollouts/{name}`: one rollout in depth. Per check, a chart of baseline vs canary over
//! the latest analysis window with the threshold or tolerance it was judged against, its verdict
//! (an inconclusive one with its cause as a stable word, `no-data`, `too-few`, ...) and evidence
//! (test, p-value, effect, interval, points kept and dropped); the recent analyses; and the audit
//! trail, newest first, a page at a time. Pure: views in, HTML out.
//!
//! Evidence is read from the stored JSON field by field, so an analysis recorded by an older
//! version (or with a NaN stored as `null`) still shows what it has instead of failing the page.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::chart::{self, Chart, Mark, Unit};
use super::html::{number, page, time, url_segment};
use super::moments;
use super::overview::{
    outage_banner, phase_badge, stage_chips, stop_banner, time_in_stage, weight_bar,
};
use super::{RolloutView, StopView};
use crate::markup::{Html, html, push_html};
use crate::readout::{self, LimitKind};
use crate::rules::{CheckRule, Queries};
use crate::store::{Analysis, AuditEntry, Page};

/// What a rollout's page shows.
#[derive(Debug, Clone, Copy)]
pub struct Detail<'a> {
    pub rollout: &'a RolloutView,
    /// The most recent analyses, newest first.
    pub analyses: &'a [Analysis],
    /// One page of the audit trail, newest first.
    pub history: &'a Page<AuditEntry>,
    /// The rollout's runs, newest first, and the one shown (its analyses and history).
    pub runs: &'a [crate::store::RunRecord],
    pub run: u32,
    /// Whether this is a later page of the history (so a link back to the newest is shown).
    pub paged: bool,
    pub stop: &'a StopView,
    /// The problems (file:line:col) of its rule file when that file does not load, so the rule
    /// shown is the file's last good version; empty while it loads.
    pub rule_file_problems: &'a [String],
    /// The shown run's recent audit entries, newest first: the stage changes on the charts.
    pub audit: &'a [AuditEntry],
    /// `[server] public_url`, for the commands printed to act.
    pub public_url: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// The unit a check's values are in, guessed from its queries (Prometheus naming conventions).
pub fn unit_of(check: &CheckRule) -> Unit {
    match &check.queries {
        Queries::Counts { .. } => Unit::Fraction,
        Queries::Values { query } => {
            let q = query.to_ascii_lowercase();
            if q.contains("_seconds") {
                Unit::Seconds
            } else if q.contains("_bytes") {
                Unit::Bytes
            } else if q.contains("_ratio") {
                Unit::Fraction
            } else {
                Unit::Plain
            }
        }
    }
}

fn get<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn num(value: &Value, path: &[&str]) -> Option<f64> {
    get(value, path).and_then(Value::as_f64)
}

fn text<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    get(value, path).and_then(Value::as_str)
}

/// A recorded chart line `[[t, v|null], ...]` as points (null becomes NaN, which the chart
/// skips); times are seconds after `t0` (0 in records written before `t0` existed).
fn points(series: Option<&Value>, side: &str) -> Vec<(f64, f64)> {
    let t0 = series
        .and_then(|s| s.get("t0"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    series
        .and_then(|s| s.get(side))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|p| {
                    let pair = p.as_array()?;
                    let t = t0 + pair.first()?.as_f64()?;
                    let v = pair.get(1).and_then(Value::as_f64).unwrap_or(f64::NAN);
                    Some((t, v))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The marks for a check's recorded result: its threshold, tolerance or slope limit, placed
/// as the judge applied it (tolerances around the baseline's median, or its rate for counts).
pub fn marks(result: &Value, unit: Unit, canary: &[(f64, f64)]) -> Vec<Mark> {
    let ev = |path: &[&str]| {
        let mut full = vec!["evidence"];
        full.extend_from_slice(path);
        num(result, &full)
    };
    let direction = text(result, &["evidence", "thresholds", "direction"]).unwrap_or("either");
    let mut out = Vec::new();
    if let Some(threshold) = ev(&["thresholds", "threshold"]) {
        let on = text(result, &["evidence", "canary", "aggregate", "aggregate"])
            .map(|a| format!(" (on the {a})"))
            .or_else(|| {
                get(
                    result,
                    &["evidence", "canary", "aggregate", "aggregate", "quantile"],
                )
                .and_then(Value::as_f64)
                .map(|q| format!(" (on the {} quantile)", number(q)))
            })
            .unwrap_or_default();
        out.push(Mark::Line {
            value: threshold,
            label: format!("threshold {}{on}", chart::value_label(unit, threshold)),
        });
    }
    if let Some(tolerance) = ev(&["thresholds", "tolerance"]) {
        // Error-rate tolerances are in rate units; relative ones a fraction of the baseline.
        let sign = match direction {
            "higher-is-worse" => "+",
            "lower-is-worse" => "−",
            _ => "±",
        };
        let (reference, what, up, down) = match ev(&["baseline", "rate"]) {
            Some(rate) => (
                rate,
                format!(
                    "baseline rate {sign} {} pp",
                    readout::short(tolerance * 100.0)
                ),
                rate + tolerance,
                rate - tolerance,
            ),
            None => {
                let median = ev(&["baseline", "median"]).unwrap_or(f64::NAN);
                (
                    median,
                    format!("baseline median {sign} {}%", number(tolerance * 100.0)),
                    median * (1.0 + tolerance),
                    median * (1.0 - tolerance),
                )
            }
        };
        if reference.is_finite() {
            let label = format!("tolerance: {what}");
            out.push(match direction {
                "higher-is-worse" => Mark::Line { value: up, label },
                "lower-is-worse" => Mark::Line { value: down, label },
                _ => Mark::Band {
                    low: down,
                    high: up,
                    label,
                },
            });
        }
    }
    if let Some(limit) = ev(&["thresholds", "max_slope_per_minute"]) {
        let start = canary.iter().find(|(t, v)| t.is_finite() && v.is_finite());
        if let Some(&(t0, v0)) = start {
            let label = format!("slope limit {} per minute", chart::value_label(unit, limit));
            let signs: &[f64] = match direction {
                "higher-is-worse" => &[1.0],
                "lower-is-worse" => &[-1.0],
                _ => &[1.0, -1.0],
            };
            for sign in signs {
                out.push(Mark::Slope {
                    t0,
                    v0,
                    per_second: sign * limit / 60.0,
                    label: label.clone(),
                });
            }
        }
    }
    out
}

/// A check's verdict as its badge says it: "not applicable" for a check that could not judge
/// (its reason says why), else the outcome.
fn check_verdict(result: &Value) -> Option<&str> {
    match text(result, &["verdict", "cause"]) {
        Some("not-applicable") => Some("not applicable"),
        _ => text(result, &["verdict", "outcome"]),
    }
}

/// Why a check's verdict is inconclusive, as the judge names it (`no-data`, `too-few`, ...):
/// a stable word for people and scripts. Absent for a pass or a fail, and in records written
/// before causes existed.
fn check_cause(result: &Value) -> Option<&str> {
    text(result, &["verdict", "cause"])
}

fn verdict_badge(outcome: &str) -> Html {
    let class = match outcome {
        "pass" | "fail" | "inconclusive" | "marginal" => outcome,
        _ => "inconclusive",
    };
    html!(
        "<span class=\"verdict verdict-{}\">{}</span>",
        class,
        outcome
    )
}

/// A check's badge, and the cause of an inconclusive verdict as a word after it
/// (`<code class="cause">no-data</code>`, also in the badge's `data-cause`).
fn check_badge(result: &Value) -> Html {
    let outcome = check_verdict(result).unwrap_or("?");
    match check_cause(result) {
        None => verdict_badge(outcome),
        Some(cause) => html!(
            "<span class=\"verdict verdict-inconclusive\" data-cause=\"{}\">{}</span> \
             <code class=\"cause\">{}</code>",
            cause,
            outcome,
            cause
        ),
    }
}

fn side_text(result: &Value, side: &str, unit: Unit) -> String {
    let at = |key: &str| num(result, &["evidence", side, key]);
    let mut parts = vec![format!(
        "{} points, {} dropped",
        at("points").unwrap_or(0.0),
        at("dropped").unwrap_or(0.0)
    )];
    for (key, name) in [("median", "median"), ("p99", "p99")] {
        if let Some(v) = at(key) {
            parts.push(format!("{name} {}", chart::value_label(unit, v)));
        }
    }
    if let Some(v) = num(result, &["evidence", side, "aggregate", "value"]) {
        parts.push(format!("aggregate {}", chart::value_label(unit, v)));
    }
    if let (Some(e), Some(t)) = (at("errors"), at("total")) {
        parts.push(format!("{} errors of {}", number(e), number(t)));
    }
    if let Some(r) = at("rate") {
        parts.push(format!("rate {}", chart::value_label(Unit::Fraction, r)));
    }
    if let Some(s) = at("slope_per_minute") {
        parts.push(format!("slope {} per minute", chart::value_label(unit, s)));
    }
    parts.join(" · ")
}

/// The evidence behind one verdict, as a definition list.
fn evidence(result: &Value, unit: Unit) -> Html {
    let dash = || "—".to_string();
    let test = text(result, &["evidence", "test"]).map_or_else(dash, str::to_string);
    let p = num(result, &["evidence", "p_value"]).map_or_else(dash, number);
    // In the unit of the check's limit (`+0.28 pp` for an error rate), then the ratio.
    let is_rate = ["baseline", "canary"]
        .iter()
        .any(|side| num(result, &["evidence", side, "rate"]).is_some());
    let limit = [
        ("tolerance", LimitKind::Tolerance),
        ("threshold", LimitKind::Threshold),
        ("max_slope_per_minute", LimitKind::MaxSlopePerMinute),
    ]
    .into_iter()
    .find(|(key, _)| num(result, &["evidence", "thresholds", key]).is_some())
    .map(|(_, kind)| kind);
    let effect = get(result, &["evidence", "effect"])
        .filter(|e| !e.is_null())
        .map_or_else(dash, |e| {
            let ratio = num(e, &["ratio"]);
            let mut text = readout::effect(is_rate, limit, ratio, num(e, &["difference"]));
            if let Some(r) = ratio {
                text.push_str(&format!(", ratio {}", number(r)));
            }
            text
        });
    let interval = get(result, &["evidence", "effect", "interval"])
        .filter(|i| !i.is_null())
        .map_or_else(dash, |i| {
            format!(
                "[{}, {}] at {}% confidence ({})",
                num(i, &["low"]).map_or_else(dash, number),
                num(i, &["high"]).map_or_else(dash, number),
                num(i, &["confidence"]).map_or_else(dash, |c| number(c * 100.0)),
                text(i, &["scale"]).unwrap_or("?")
            )
        });
    let comparison = text(result, &["evidence", "comparison"]).map_or_else(dash, str::to_string);
    let settings = format!(
        "{}, confidence {}%, at least {} samples",
        text(result, &["evidence", "thresholds", "direction"]).unwrap_or("?"),
        num(result, &["evidence", "thresholds", "confidence"])
            .map_or_else(dash, |c| number(c * 100.0)),
        num(result, &["evidence", "thresholds", "min_samples"]).map_or_else(dash, number)
    );
    // Which rule decided, and the bound it rested on (absent before any comparison).
    let decision = get(result, &["evidence", "decision"])
        .filter(|d| !d.is_null())
        .map(|d| {
            let accruing = text(result, &["verdict", "cause"]) == Some("accruing");
            let rule = match text(d, &["rule"]).unwrap_or("?") {
                "shown-beyond" => "shown beyond the limit (significant)",
                "shown-within" => "shown within the limit",
                // A staged check: its stage's bound tightens with every analysis (issue 19).
                "not-shown" if accruing => "accruing over the stage, the next analyses decide",
                "not-shown" => "not shown either way",
                "observed" => "the observed value",
                other => other,
            };
            html!(
                "<dt>Decided by</dt><dd class=\"decision\">{}: bound {} vs limit {} ({})</dd>",
                rule,
                num(d, &["bound"]).map_or_else(|| "unbounded".to_string(), number),
                num(d, &["limit"]).map_or_else(dash, number),
                text(d, &["scale"]).unwrap_or("?")
            )
        });
    // How the daemon read the answers (an absent errors series read as zeros), one a line.
    let notes = get(result, &["evidence", "notes"]).and_then(Value::as_array);
    let notes = notes.filter(|n| !n.is_empty()).map(|n| {
        let lines = n.iter().filter_map(Value::as_str).map(|n| html!("{}", n));
        html!(
            "<dt>Notes</dt><dd class=\"notes\">{}</dd>",
            Html::join(lines, "<br>")
        )
    });
    html!(
        "<dl class=\"evidence\"><dt>Test</dt><dd class=\"test\">{}</dd>\
         <dt>p-value</dt><dd class=\"p-value\">{}</dd>\
         <dt>Effect</dt><dd class=\"effect\">{}</dd>\
         <dt>Interval</dt><dd class=\"interval\">{}</dd>\
         <dt>Compared</dt><dd>{}</dd>\
         <dt>Baseline</dt><dd class=\"points\">{}</dd>\
         <dt>Canary</dt><dd class=\"points\">{}</dd>\
         <dt>Settings</dt><dd>{}</dd>{}{}</dl>",
        test,
        p,
        effect,
        interval,
        comparison,
        side_text(result, "baseline", unit),
        side_text(result, "canary", unit),
        settings,
        decision.unwrap_or_default(),
        notes.unwrap_or_default()
    )
}

/// One check's card: name, verdict, reason, chart (with `moments`), evidence.
fn check_card(name: &str, unit: Unit, latest: Option<&Analysis>, moments: &[Mark]) -> Html {
    let find = |key: &str| {
        latest
            .and_then(|a| a.evidence.get(key))
            .and_then(Value::as_array)
            .and_then(|items| {
                items.iter().find(|item| {
                    item.get(if key == "series" { "check" } else { "name" })
                        .and_then(Value::as_str)
                        == Some(name)
                })
            })
    };
    let result = find("checks");
    let series = find("series");
    let baseline = points(series, "baseline");
    let canary = points(series, "canary");
    let mut marks = result.map(|r| marks(r, unit, &canary)).unwrap_or_default();
    marks.extend_from_slice(moments);
    let title = format!("{name}: baseline vs canary");
    let mut out = Html::literal("<section class=\"card check\">");
    let verdict = result
        .filter(|r| check_verdict(r).is_some())
        .map(check_badge)
        .unwrap_or_default();
    push_html!(
        out,
        "<div class=\"check-head\"><h3>{}</h3>{}</div>",
        name,
        verdict
    );
    if let Some(reason) = result.and_then(|r| text(r, &["reason"])) {
        push_html!(out, "<p class=\"reason\">{}</p>", reason);
    }
    out.push_str("<div class=\"check-body\">");
    out.push_html(&chart::render(&Chart {
        title: &title,
        unit,
        baseline: &baseline,
        canary: &canary,
        marks: &marks,
    }));
    match result {
        Some(r) => out.push_html(&evidence(r, unit)),
        None => out.push_str("<p class=\"muted\">Not judged yet.</p>"),
    }
    out.push_str("</div></section>\n");
    out
}

fn analyses_table(analyses: &[Analysis]) -> Html {
    if analyses.is_empty() {
        return Html::literal("<p class=\"muted\">No analyses yet.</p>\n");
    }
    let mut out = Html::literal(
        "<table class=\"analyses\"><thead><tr><th>When</th><th>Outcome</th><th>Score</th>\
         <th>Checks</th></tr></thead><tbody>\n",
    );
    for a in analyses {
        let checks = a
            .evidence
            .get("checks")
            .and_then(Value::as_array)
            .map(|items| {
                let checks = items
                    .iter()
                    .map(|c| html!("{} {}", text(c, &["name"]).unwrap_or("?"), check_badge(c)));
                Html::join(checks, " &nbsp; ")
            })
            .unwrap_or_default();
        push_html!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            time(a.at),
            verdict_badge(&a.outcome),
            a.score
                .map_or_else(|| "—".to_string(), |s| format!("{s:.1}")),
            checks
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

fn history_table(d: &Detail<'_>) -> Html {
    let mut out = Html::new();
    if d.history.items.is_empty() {
        out.push_str("<p class=\"muted\">No history yet.</p>\n");
    } else {
        out.push_str(
            "<table class=\"history\"><thead><tr><th>When</th><th>Action</th><th>Weight</th>\
             <th>Reason</th><th>By</th></tr></thead><tbody>\n",
        );
        for e in &d.history.items {
            let weight = match (e.previous_weight, e.new_weight) {
                (Some(a), Some(b)) if a != b => format!("{a}% → {b}%"),
                (_, Some(b)) => format!("{b}%"),
                (Some(a), None) => format!("{a}%"),
                (None, None) => "—".into(),
            };
            push_html!(
                out,
                "<tr class=\"audit\"><td>{}</td><td>{}</td><td>{}</td><td class=\"reason\">{}</td>\
                 <td>{}</td></tr>\n",
                time(e.at),
                e.action,
                weight,
                e.reason,
                e.triggered_by
            );
        }
        out.push_str("</tbody></table>\n");
    }
    // Another run than the current one keeps its number in the pager's links.
    let (base, sep) = match d.run == d.rollout.state.run.number {
        true => (format!("/rollouts/{}", url_segment(&d.rollout.name)), '?'),
        false => (super::runs::link(&d.rollout.name, d.run), '&'),
    };
    let mut links = Vec::new();
    if d.paged {
        links.push(html!("<a href=\"{}\">← Newest</a>", base));
    }
    if let Some(next) = &d.history.next {
        links.push(html!(
            "<a class=\"older\" href=\"{}{}cursor={}\">Older →</a>",
            base,
            sep,
            url_segment(&next.to_string())
        ));
    }
    if !links.is_empty() {
        push_html!(
            out,
            "<p class=\"pager\">{}</p>\n",
            Html::join(links, " &nbsp; ")
        );
    }
    out
}

/// Why the rule in force is not the rule file's current text, when it is not.
fn rule_file_banner(problems: &[String]) -> Html {
    if problems.is_empty() {
        return Html::new();
    }
    let items: Html = problems
        .iter()
        .map(|p| html!("<li><code>{}</code></li>", p))
        .collect();
    html!(
        "<div class=\"banner\" role=\"alert\">Its rule file does not load: this rollout runs the \
         file's last good version until these are fixed.<ul>{}</ul></div>\n",
        items
    )
}

/// The whole page of one rollout.
pub fn render(d: &Detail<'_>) -> String {
    let view = d.rollout;
    let mut body = Html::with_capacity(16_384);
    body.push_str("<p><a href=\"/\">← All rollouts</a></p>\n");
    push_html!(
        body,
        "<h1>{} {}</h1>\n",
        view.name,
        phase_badge(&view.state.phase)
    );
    body.push_html(&stop_banner(d.stop));
    body.push_html(&outage_banner(view));
    body.push_html(&rule_file_banner(d.rule_file_problems));
    body.push_html(&super::act::approval_notice(view));
    let team = view.rule.as_ref().map_or_else(
        || Html::literal("<span class=\"muted\">no rule file loaded</span>"),
        |r| Html::text(&r.team),
    );
    push_html!(
        body,
        "<div class=\"card\"><dl class=\"evidence\"><dt>Weight</dt><dd>{}</dd><dt>Stages</dt>\
         <dd>{}</dd><dt>In stage</dt><dd>{}</dd><dt>Team</dt><dd>{}</dd></dl></div>\n",
        weight_bar(view.state.weight),
        stage_chips(view),
        time_in_stage(view, d.now),
        team
    );
    body.push_html(&super::runs::section(
        &view.name,
        d.runs,
        d.run,
        view.state.run.number,
    ));

    body.push_html(&super::act::commands_card(view, d.public_url));

    let latest = d.analyses.first();
    let stage_changes = moments::stage_changes(d.audit);
    let moments_of = |name: &str| {
        let mut all = stage_changes.clone();
        all.extend(moments::failures(name, d.analyses));
        all
    };
    body.push_str("<h2>Checks</h2>\n");
    match latest {
        Some(a) => {
            push_html!(
                body,
                "<p class=\"muted\">Latest analysis {}: {} (score {}).</p>\n",
                time(a.at),
                verdict_badge(&a.outcome),
                a.score
                    .map_or_else(|| "—".to_string(), |s| format!("{s:.1}"))
            );
        }
        None => body.push_str("<p class=\"muted\">No analysis has run yet.</p>\n"),
    }
    body.push_str("<div class=\"checks\">\n");
    match &view.rule {
        Some(rule) => {
            for check in &rule.checks {
                let name = &check.spec.name;
                body.push_html(&check_card(name, unit_of(check), latest, &moments_of(name)));
            }
        }
        None => {
            let names: Vec<String> = latest
                .and_then(|a| a.evidence.get("checks"))
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|c| text(c, &["name"]).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for name in names {
                body.push_html(&check_card(&name, Unit::Plain, latest, &moments_of(&name)));
            }
        }
    }
    body.push_str("</div>\n<h2>Recent analyses</h2>\n");
    body.push_html(&analyses_table(d.analyses));
    body.push_str("<h2>History</h2>\n");
    body.push_html(&history_table(d));
    page(&view.name, &body, false)
}

#[cfg(test)]
#[path = "detail_tests.rs"]
mod tests;
