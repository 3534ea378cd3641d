//! The validated rollout rule: what the daemon runs once a rule file has passed `validate`.
//!
//! Plain data, ready to use: durations are `Duration`s, names are checked against the daemon
//! config, every check carries the `judge::CheckSpec` the judge needs and the plan carries the
//! `Trigger`s the state machine needs. Nothing here reads files or clocks.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::judge::CheckSpec;
use crate::rollout::{EventKind, Plan, Severity, Targeting};

use super::duration;

/// One rollout, from one rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRule {
    /// The file it came from.
    pub path: PathBuf,
    pub name: String,
    pub team: String,
    /// A `[sources.NAME]` of the daemon config.
    pub source: String,
    /// An `[actuators.NAME]` of the daemon config.
    pub actuator: String,
    pub schedule: Schedule,
    pub plan: Plan,
    pub targeting: Targeting,
    pub sides: Sides,
    /// In file order; `plan.triggers[i]` belongs to `checks[i]`.
    pub checks: Vec<CheckRule>,
    pub scoring: Scoring,
    pub routes: Vec<Route>,
}

/// When analyses run.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// A standard 5-field crontab expression (minute hour day-of-month month day-of-week).
    Cron {
        expr: String,
        cron: Box<croner::Cron>,
    },
    /// A fixed interval from the start of each stage.
    Every(Duration),
}

/// What identifies baseline and canary series in queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sides {
    /// Substituted for `{{label}}`, e.g. `version`.
    pub label: String,
    /// Substituted for `{{side}}` in the baseline's queries.
    pub baseline: String,
    /// Substituted for `{{side}}` in the canary's queries.
    pub canary: String,
}

/// Baseline or canary, to render a query for one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Baseline,
    Canary,
}

/// The query templates of a check, by the shape of data they return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queries {
    /// One series of values (relative, absolute, trend checks).
    Values { query: Box<str> },
    /// Errors and totals (error-rate checks).
    Counts { errors: Box<str>, total: Box<str> },
}

/// The placeholders a query template may use.
pub const PLACEHOLDERS: [&str; 4] = ["side", "label", "window", "step"];

/// Fill a query template's [`PLACEHOLDERS`], in one pass (a value is never read for
/// placeholders itself); any other `{{...}}` text is kept as it is.
pub fn render(
    template: &str,
    sides: &Sides,
    side: Side,
    window: Duration,
    step: Duration,
) -> String {
    let value = match side {
        Side::Baseline => &sides.baseline,
        Side::Canary => &sides.canary,
    };
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let (placeholder, text) = if rest.starts_with("{{side}}") {
            ("{{side}}", Cow::Borrowed(value.as_str()))
        } else if rest.starts_with("{{label}}") {
            ("{{label}}", Cow::Borrowed(sides.label.as_str()))
        } else if rest.starts_with("{{window}}") {
            ("{{window}}", Cow::Owned(duration::format(window)))
        } else if rest.starts_with("{{step}}") {
            ("{{step}}", Cow::Owned(duration::format(step)))
        } else {
            // Not a placeholder here; one may start at the next brace (`x{{{label}}=...}`).
            ("{", Cow::Borrowed("{"))
        };
        out.push_str(&text);
        rest = &rest[placeholder.len()..];
    }
    out.push_str(rest);
    out
}

/// One validated check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRule {
    /// Name, kind, direction, confidence, minimum samples: what the judge needs.
    pub spec: CheckSpec,
    pub queries: Queries,
    /// The range each query covers, substituted for `{{window}}`.
    pub window: Duration,
    /// The spacing of the points of each range query, substituted for `{{step}}`: a point
    /// summarises its own step (`increase(x[{{step}}])`), so points do not overlap.
    pub step: Duration,
    /// Its scoring group (one allocation per group name in a rule, shared by its checks).
    pub group: Arc<str>,
    /// Its weight within the group.
    pub weight: f64,
    /// A failing critical check fails the whole analysis, whatever the score.
    pub critical: bool,
}

impl CheckRule {
    /// The check's queries for one side, placeholders filled in.
    pub fn rendered(&self, sides: &Sides, side: Side) -> Queries {
        match &self.queries {
            Queries::Values { .. } => Queries::Values {
                query: self.render_part(sides, side, 0).into(),
            },
            Queries::Counts { .. } => Queries::Counts {
                errors: self.render_part(sides, side, 0).into(),
                total: self.render_part(sides, side, 1).into(),
            },
        }
    }

    /// One of the check's queries for one side, placeholders filled in: its only query, or of
    /// an error-rate check the errors' (`part` 0) or the totals' (any other `part`).
    pub fn render_part(&self, sides: &Sides, side: Side, part: usize) -> String {
        let template = match (&self.queries, part) {
            (Queries::Values { query }, _) => query,
            (Queries::Counts { errors, .. }, 0) => errors,
            (Queries::Counts { total, .. }, _) => total,
        };
        render(template, sides, side, self.window, self.step)
    }
}

/// How an analysis's score is computed from its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    /// Score (0–100) at or above which an analysis passes.
    pub pass: f64,
    /// Score at or above which (and below `pass`) an analysis is marginal.
    pub marginal: f64,
    /// Every group a check uses, with its weight, sorted by name.
    pub groups: Vec<ScoreGroup>,
    /// Whether the checks of an analysis are judged as a family (Holm's correction), so a
    /// healthy analysis alarms at most at the checks' significance however many checks it has.
    /// `[scoring] family_wise`, default true.
    pub family_wise: bool,
}

/// A scoring group and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreGroup {
    pub name: String,
    pub weight: f64,
}

/// Which receivers get which events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `[receivers.NAME]`s of the daemon config.
    pub receivers: Vec<String>,
    /// The events routed; all of them when the rule file names none.
    pub events: Vec<EventKind>,
    /// Events below this severity are not routed.
    pub min_severity: Severity,
}

impl Route {
    /// Whether an event of this kind and severity goes to this route's receivers.
    pub fn matches(&self, kind: EventKind, severity: Severity) -> bool {
        severity >= self.min_severity && self.events.contains(&kind)
    }
}

/// Every event kind with its name in rule files (kebab-case, as serde writes it).
pub const EVENT_KINDS: [(&str, EventKind); 17] = [
    ("started", EventKind::Started),
    ("stage-advanced", EventKind::StageAdvanced),
    ("waiting-approval", EventKind::WaitingApproval),
    ("succeeded", EventKind::Succeeded),
    ("paused", EventKind::Paused),
    ("resumed", EventKind::Resumed),
    ("rolled-back", EventKind::RolledBack),
    ("aborted", EventKind::Aborted),
    ("emergency-stop", EventKind::EmergencyStop),
    ("emergency-cleared", EventKind::EmergencyCleared),
    ("check-failed", EventKind::CheckFailed),
    ("inconclusive-streak", EventKind::InconclusiveStreak),
    ("backend-errors", EventKind::BackendErrors),
    ("actuator-failed", EventKind::ActuatorFailed),
    ("config-reload-failed", EventKind::ConfigReloadFailed),
    ("task-restarted", EventKind::TaskRestarted),
    ("storage-failed", EventKind::StorageFailed),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde::de::IntoDeserializer;
    use serde::de::value::{Error as ValueError, StrDeserializer};

    #[test]
    fn event_names_are_the_serde_names_and_cover_every_kind() {
        for (name, kind) in EVENT_KINDS {
            let de: StrDeserializer<'_, ValueError> = name.into_deserializer();
            assert_eq!(EventKind::deserialize(de), Ok(kind), "{name}");
        }
        // A new EventKind variant makes this match fail to compile: add it to EVENT_KINDS.
        let count = |k: EventKind| match k {
            EventKind::Started
            | EventKind::StageAdvanced
            | EventKind::WaitingApproval
            | EventKind::Succeeded
            | EventKind::Paused
            | EventKind::Resumed
            | EventKind::RolledBack
            | EventKind::Aborted
            | EventKind::EmergencyStop
            | EventKind::EmergencyCleared
            | EventKind::CheckFailed
            | EventKind::InconclusiveStreak
            | EventKind::BackendErrors
            | EventKind::ActuatorFailed
            | EventKind::ConfigReloadFailed
            | EventKind::TaskRestarted
            | EventKind::StorageFailed => 1,
        };
        assert_eq!(
            EVENT_KINDS.iter().map(|(_, k)| count(*k)).sum::<usize>(),
            17
        );
    }

    #[test]
    fn render_fills_every_placeholder() {
        let sides = Sides {
            label: "version".into(),
            baseline: "v1".into(),
            canary: "v2".into(),
        };
        let q = "rate(x{ {{label}}=\"{{side}}\" }[{{step}}]) # over {{window}}";
        let (w, st) = (Duration::from_secs(1800), Duration::from_secs(90));
        assert_eq!(
            render(q, &sides, Side::Canary, w, st),
            "rate(x{ version=\"v2\" }[1m30s]) # over 30m"
        );
        assert_eq!(
            render(q, &sides, Side::Baseline, w, Duration::from_secs(60)),
            "rate(x{ version=\"v1\" }[1m]) # over 30m"
        );
    }

    #[test]
    fn routes_match_by_kind_and_minimum_severity() {
        let route = Route {
            receivers: vec!["pager".into()],
            events: vec![EventKind::RolledBack],
            min_severity: Severity::Warning,
        };
        assert!(route.matches(EventKind::RolledBack, Severity::Critical));
        assert!(!route.matches(EventKind::RolledBack, Severity::Info));
        assert!(!route.matches(EventKind::Paused, Severity::Critical));
    }
}
