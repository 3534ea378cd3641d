//! Content: a [`Notification`] rendered for each kind of receiver (email subject, plain text and
//! HTML; Slack blocks; the generic webhook document; the PagerDuty Events v2 event). It owns
//! wording and layout; it must not choose recipients nor talk to the network. Pure. The HTML
//! is built as [`Html`], which escapes every text put into it.

use serde_json::{Value, json};

use super::notification::{CheckRow, IncidentAction, Limit, Notification, Scope};
use super::route::{event_name, severity_name};
use crate::markup::{Html, push_html};
use crate::readout::{self, LimitKind};
use crate::rollout::Severity;

/// The version of the generic webhook document (see the module doc of [`super`]).
pub const WEBHOOK_SCHEMA_VERSION: u32 = 1;

/// A one-line summary: `[canaryd] CRITICAL web: rolled back at 10% (Rolled back from ...)`.
pub fn subject(n: &Notification) -> String {
    let tag = match n.incident {
        IncidentAction::Resolve => "RESOLVED".to_string(),
        _ => severity_name(n.severity).to_uppercase(),
    };
    let mut s = format!("[canaryd] {tag} {}: {}", about(n), first_line(&n.message));
    if s.chars().count() > 200 {
        s = s.chars().take(199).collect::<String>() + "…";
    }
    s
}

/// What the notification is about, for a title: the rollout's name, or `daemon`.
fn about(n: &Notification) -> &str {
    n.about_rollout().unwrap_or("daemon")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// A number for a table cell: short, no trailing zeros, exponent for very large or small.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    if x.abs() >= 1e6 || x.abs() < 1e-3 {
        return format!("{x:.3e}");
    }
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_string(), fmt_num)
}

/// A side's value: an error rate as a percentage (`0.52%`), anything else as a number.
fn side_cell(row: &CheckRow, value: Option<f64>) -> String {
    match (row.measure == "error rate", value) {
        (true, Some(r)) => readout::rate(r),
        _ => opt(value),
    }
}

/// How a row's limit reads ([`crate::readout`]): its kind and value.
fn limit_of(row: &CheckRow) -> Option<(LimitKind, f64)> {
    row.limit.map(|l| match l {
        Limit::Tolerance(t) => (LimitKind::Tolerance, t),
        Limit::Threshold(t) => (LimitKind::Threshold, t),
        Limit::MaxSlopePerMinute(s) => (LimitKind::MaxSlopePerMinute, s),
    })
}

/// The effect cell, in the unit of the row's limit: `+0.28 pp` for an error rate, `+12.5%`
/// against a relative tolerance, the distance to a threshold on the metric's scale.
pub fn effect_cell(row: &CheckRow) -> String {
    let is_rate = row.measure == "error rate";
    readout::effect(
        is_rate,
        limit_of(row).map(|(kind, _)| kind),
        row.ratio,
        row.difference,
    )
}

/// The threshold cell (`tolerance 10%`, `tolerance 1 pp`, `threshold 0.5`, `max slope 2/min`).
pub fn limit_cell(row: &CheckRow) -> String {
    match limit_of(row) {
        Some((kind, value)) => readout::limit(row.measure == "error rate", kind, value),
        None => "-".to_string(),
    }
}

/// The p-value cell.
pub fn p_cell(row: &CheckRow) -> String {
    match row.p_value {
        Some(p) if p < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
        None => "-".to_string(),
    }
}

const HEADERS: [&str; 7] = [
    "check",
    "verdict",
    "baseline",
    "canary",
    "effect",
    "threshold",
    "p-value",
];

fn cells(row: &CheckRow) -> [String; 7] {
    [
        row.check.clone(),
        row.verdict.clone(),
        side_cell(row, row.baseline),
        side_cell(row, row.canary),
        effect_cell(row),
        limit_cell(row),
        p_cell(row),
    ]
}

fn stage_line(n: &Notification) -> String {
    match &n.stage {
        Some(s) => format!(
            "stage {} of {} `{}` ({}% planned), canary now at {}%",
            s.number, s.of, s.name, s.weight, n.weight
        ),
        None => format!("canary at {}%", n.weight),
    }
}

/// The plain-text body: what happened, the evidence table, the link and the commands.
pub fn text(n: &Notification) -> String {
    let mut out = String::new();
    match n.about_rollout() {
        Some(rollout) => {
            out.push_str(&format!(
                "Rollout {rollout} (team {}): {}\n\n",
                n.team,
                event_name(n.event)
            ));
            out.push_str(&format!("Decision: {}\n", n.message));
            out.push_str(&format!("Phase:    {}\n", n.phase));
            out.push_str(&format!("Stage:    {}\n", stage_line(n)));
        }
        None => {
            out.push_str(&format!("The canaryd daemon: {}\n\n", event_name(n.event)));
            out.push_str(&format!("What:     {}\n", n.message));
        }
    }
    out.push_str(&format!(
        "Severity: {}\nAt:       {}\n",
        severity_name(n.severity),
        n.at.to_rfc3339()
    ));
    if !n.checks.is_empty() {
        out.push_str("\nLatest analysis:\n");
        let rows: Vec<[String; 7]> = n.checks.iter().map(cells).collect();
        let mut widths = HEADERS.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            format!("  {}\n", padded.join("  ").trim_end())
        };
        out.push_str(&line(&HEADERS.map(String::from)));
        for row in &rows {
            out.push_str(&line(row));
        }
        for row in &n.checks {
            out.push_str(&format!("  - {}: {}\n", row.check, row.reason));
        }
    }
    if let Some(url) = &n.status_url {
        out.push_str(&format!("\nStatus: {url}\n"));
    }
    if !n.commands.is_empty() {
        out.push_str("\nTo act:\n");
        for c in &n.commands {
            out.push_str(&format!("  {c}\n"));
        }
    }
    out
}

fn colour(n: &Notification) -> &'static str {
    match (n.incident, n.severity) {
        (IncidentAction::Resolve, _) => "#2e7d32",
        (_, Severity::Critical) => "#c62828",
        (_, Severity::Warning) => "#ef6c00",
        (_, Severity::Info) => "#1565c0",
    }
}

/// The HTML body: the same content as [`text`], with a real table. Built as [`Html`], so
/// every text in it is escaped.
pub fn html(n: &Notification) -> String {
    let mut out = Html::literal("<!DOCTYPE html>\n<html><body style=\"font-family:sans-serif\">\n");
    push_html!(
        out,
        "<h2 style=\"color:{}\">{} &middot; {}</h2>\n",
        colour(n),
        n.about_rollout().unwrap_or("canaryd daemon"),
        event_name(n.event)
    );
    if n.about_rollout().is_some() {
        push_html!(out, "<p><b>Decision:</b> {}</p>\n", n.message);
        push_html!(
            out,
            "<p>Team {} &middot; phase <b>{}</b> &middot; {} &middot; severity {} &middot; {}</p>\n",
            n.team,
            n.phase,
            stage_line(n),
            severity_name(n.severity),
            n.at.to_rfc3339()
        );
    } else {
        push_html!(out, "<p><b>What:</b> {}</p>\n", n.message);
        push_html!(
            out,
            "<p>Severity {} &middot; {}</p>\n",
            severity_name(n.severity),
            n.at.to_rfc3339()
        );
    }
    if !n.checks.is_empty() {
        out.push_str("<h3>Latest analysis</h3>\n<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr>");
        for h in HEADERS {
            push_html!(out, "<th>{}</th>", h);
        }
        out.push_str("</tr>\n");
        for row in &n.checks {
            out.push_str("<tr>");
            for cell in cells(row) {
                push_html!(out, "<td>{}</td>", cell);
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n<ul>\n");
        for row in &n.checks {
            push_html!(out, "<li><b>{}</b>: {}</li>\n", row.check, row.reason);
        }
        out.push_str("</ul>\n");
    }
    if let Some(url) = &n.status_url {
        push_html!(out, "<p><a href=\"{}\">{}</a></p>\n", url, url);
    }
    if !n.commands.is_empty() {
        push_html!(
            out,
            "<p>To act:</p>\n<pre>{}</pre>\n",
            n.commands.join("\n")
        );
    }
    out.push_str("</body></html>\n");
    out.into_string()
}

/// The Slack incoming-webhook body: `text` (the fallback and notification line) and `blocks`.
pub fn slack(n: &Notification) -> Value {
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*{}*\n{}", subject(n), n.message)}})];
    if n.about_rollout().is_some() {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("team {} · phase {} · {}", n.team, n.phase, stage_line(n))}]}));
    }
    if !n.checks.is_empty() {
        let rows: Vec<String> = n
            .checks
            .iter()
            .map(|row| {
                let c = cells(row);
                format!(
                    "`{}` {}: baseline {} → canary {} ({}; {}; p={})",
                    c[0], c[1], c[2], c[3], c[4], c[5], c[6]
                )
            })
            .collect();
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": rows.join("\n")}}));
    }
    let mut links = Vec::new();
    if let Some(url) = &n.status_url {
        links.push(format!("<{url}|status page>"));
    }
    links.extend(n.commands.iter().map(|c| format!("`{c}`")));
    if !links.is_empty() {
        blocks.push(
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": links.join(" · ")}]}),
        );
    }
    json!({"text": subject(n), "blocks": blocks})
}

/// The generic webhook document (schema in the module doc of [`super`]).
pub fn webhook(n: &Notification, idempotency_key: &str) -> Value {
    json!({
        "version": WEBHOOK_SCHEMA_VERSION,
        "idempotency_key": idempotency_key,
        "summary": subject(n),
        "text": text(n),
        "notification": n,
    })
}

/// The PagerDuty Events v2 event: `trigger` or `resolve` keyed by the incident's group key.
pub fn pagerduty(n: &Notification, routing_key: &str, source: &str) -> Value {
    let action = match n.incident {
        IncidentAction::Resolve => "resolve",
        IncidentAction::Trigger | IncidentAction::None => "trigger",
    };
    let severity = match n.severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": n.group_key,
    });
    if action == "trigger" {
        let summary: String = subject(n).chars().take(1024).collect();
        event["payload"] = json!({
            "summary": summary,
            "severity": severity,
            "source": source,
            "component": n.about_rollout().unwrap_or("canaryd"),
            "group": if n.team.is_empty() { "canaryd" } else { n.team.as_str() },
            "class": event_name(n.event),
            "timestamp": n.at.to_rfc3339(),
            "custom_details": {
                "rollout": n.rollout,
                "team": n.team,
                "decision": n.message,
                "phase": n.phase,
                "stage": n.stage,
                "weight": n.weight,
                "checks": n.checks,
                "commands": n.commands,
            },
        });
        if let Some(url) = &n.status_url {
            let text = match n.scope {
                Scope::Rollout => "canaryd status page",
                Scope::Daemon => "canaryd overview",
            };
            event["links"] = json!([{"href": url, "text": text}]);
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::rollout::EventKind;

    fn reload_failed() -> Notification {
        Notification::daemon(
            EventKind::ConfigReloadFailed,
            Severity::Warning,
            "Rule file /etc/canaryd/rules/shop-b.toml does not load:\n3:8: error".to_string(),
            "canaryd/rule-file/shop-b.toml".to_string(),
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            Some("https://canaryd.example.com/"),
        )
    }

    #[test]
    fn a_daemon_event_names_no_rollout_and_links_the_overview() {
        let n = reload_failed();
        assert_eq!(
            subject(&n),
            "[canaryd] WARNING daemon: Rule file /etc/canaryd/rules/shop-b.toml does not load:"
        );
        let body = text(&n);
        assert!(
            body.starts_with("The canaryd daemon: config-reload-failed\n"),
            "{body}"
        );
        assert!(
            body.contains("Status: https://canaryd.example.com/\n"),
            "{body}"
        );
        for wrong in ["Rollout", "team", "Phase", "Stage", "rollouts/", "To act"] {
            assert!(!body.contains(wrong), "{wrong:?} in {body}");
        }
        let page = html(&n);
        assert!(
            page.contains("canaryd daemon &middot; config-reload-failed"),
            "{page}"
        );
        assert!(!page.contains("phase"), "{page}");
        let pd = pagerduty(&n, "key", "canaryd");
        assert_eq!(pd["dedup_key"], "canaryd/rule-file/shop-b.toml");
        assert_eq!(pd["payload"]["component"], "canaryd");
        assert_eq!(pd["links"][0]["text"], "canaryd overview");
        let slack = slack(&n).to_string();
        assert!(!slack.contains("phase"), "{slack}");
    }

    #[test]
    fn a_daemon_events_resolve_is_marked_resolved() {
        let n = reload_failed().resolving("canaryd/rule-file/shop-b.toml".to_string());
        assert!(subject(&n).starts_with("[canaryd] RESOLVED daemon: "));
        assert_eq!(pagerduty(&n, "key", "canaryd")["event_action"], "resolve");
    }
}
