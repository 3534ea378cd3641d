//! The [`Notification`]: what one event of one rollout tells people, built from a state-machine
//! `Notify` action and the latest analysis evidence, and stored as the outbox payload (JSON). It
//! owns choosing what goes in (stage, decision, evidence table, status link, commands to act) and
//! the incident a notification belongs to; it must not format for a receiver (that is
//! `content`) nor decide who receives it (that is `route`). Pure: no I/O, no clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::judge::CheckResult;
use crate::rollout::{Command, EventKind, Phase, Plan, RolloutState, Severity};

/// What a notification does to the on-call incident of its rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IncidentAction {
    /// Opens the incident (or adds to the open one): PagerDuty `trigger`.
    Trigger,
    /// Closes it: a paused rollout resumed, a rolled-back one retried, an aborted one given up.
    /// PagerDuty `resolve`.
    Resolve,
    /// For information only: not part of an incident.
    None,
}

/// Which incident role an event plays, by kind and severity.
///
/// Warnings and critical problems open an incident; resuming, retrying after a rollback (the
/// state machine says so with a `rolled-back` event of severity `info`) and aborting close it;
/// everything else (progress, approvals, clearing an emergency stop, which leaves the rollout
/// paused) is information.
pub fn incident_action(event: EventKind, severity: Severity) -> IncidentAction {
    match event {
        EventKind::Resumed | EventKind::Aborted => IncidentAction::Resolve,
        EventKind::RolledBack if severity == Severity::Info => IncidentAction::Resolve,
        EventKind::Started
        | EventKind::StageAdvanced
        | EventKind::WaitingApproval
        | EventKind::Succeeded
        | EventKind::EmergencyCleared => IncidentAction::None,
        EventKind::Paused
        | EventKind::RolledBack
        | EventKind::EmergencyStop
        | EventKind::CheckFailed
        | EventKind::InconclusiveStreak
        | EventKind::BackendErrors
        | EventKind::ActuatorFailed
        | EventKind::ConfigReloadFailed
        | EventKind::TaskRestarted
        | EventKind::StorageFailed => {
            if severity >= Severity::Warning {
                IncidentAction::Trigger
            } else {
                IncidentAction::None
            }
        }
    }
}

/// The incident group key of a rollout: one per (rollout, incident).
///
/// An incident is anchored on the start of the stage it happened in (`stage_started_at` of the
/// state *before* the step): pausing, rolling back and emergency stops keep that instant, while
/// resuming, retrying and advancing start a new one. So every notification about one problem
/// (the pause, a later rollback, repeated failing analyses, the resolve) shares the key, and the
/// next problem gets a new one. `fallback` (the step's time) anchors rollouts that never started.
pub fn group_key(
    rollout: &str,
    stage_started_at: Option<DateTime<Utc>>,
    fallback: DateTime<Utc>,
) -> String {
    let anchor = stage_started_at.unwrap_or(fallback);
    format!("canaryd/{rollout}/{}", anchor.timestamp_millis())
}

/// The stage a rollout is at, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageInfo {
    /// From 1.
    pub number: usize,
    pub of: usize,
    pub name: String,
    /// The stage's planned canary weight.
    pub weight: u8,
}

/// The limit a check was judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Limit {
    /// Allowed relative (fraction of the baseline) or rate-unit departure.
    Tolerance(f64),
    /// A fixed value on the metric's scale.
    Threshold(f64),
    MaxSlopePerMinute(f64),
}

/// One row of the evidence table: one check of the latest analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    pub check: String,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// The judge's sentence.
    pub reason: String,
    /// What `baseline` and `canary` are: `error rate`, `median`, `mean`, `slope/min` or an
    /// aggregate's name.
    pub measure: String,
    pub baseline: Option<f64>,
    pub canary: Option<f64>,
    /// Canary / baseline (or / threshold).
    pub ratio: Option<f64>,
    /// Canary − baseline (or − threshold, or the slope).
    pub difference: Option<f64>,
    pub limit: Option<Limit>,
    pub p_value: Option<f64>,
    pub confidence: f64,
    /// The statistical test used.
    pub test: Option<String>,
}

impl CheckRow {
    /// The row for one judged check.
    pub fn from_result(result: &CheckResult) -> CheckRow {
        let ev = &result.evidence;
        let (b, c) = (&ev.baseline, &ev.canary);
        let (measure, baseline, canary) = if c.rate.is_some() || b.rate.is_some() {
            ("error rate".to_string(), b.rate, c.rate)
        } else if c.slope_per_minute.is_some() {
            (
                "slope/min".to_string(),
                b.slope_per_minute,
                c.slope_per_minute,
            )
        } else if let Some(agg) = c.aggregate.or(b.aggregate) {
            (
                format!("{:?}", agg.aggregate).to_lowercase(),
                b.aggregate.map(|a| a.value),
                c.aggregate.map(|a| a.value),
            )
        } else if c.median.is_some() || b.median.is_some() {
            ("median".to_string(), b.median, c.median)
        } else {
            ("mean".to_string(), b.mean, c.mean)
        };
        let t = &ev.thresholds;
        let limit = t
            .tolerance
            .map(Limit::Tolerance)
            .or(t.threshold.map(Limit::Threshold))
            .or(t.max_slope_per_minute.map(Limit::MaxSlopePerMinute));
        let ratio = ev.effect.and_then(|e| e.ratio);
        CheckRow {
            check: result.name.clone(),
            verdict: result.verdict.as_str().to_string(),
            reason: result.reason.clone(),
            measure,
            baseline,
            canary,
            ratio,
            difference: ev.effect.map(|e| e.difference),
            limit,
            p_value: ev.p_value,
            confidence: t.confidence,
            test: ev.test.clone(),
        }
    }
}

/// What a notification is about: one rollout, or the daemon itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// A rollout's event: `rollout` names it, the link is its page.
    #[default]
    Rollout,
    /// The daemon's own trouble (a rule reload that failed, the state database): `rollout` is
    /// empty, the link is the overview, and the wording names no rollout.
    Daemon,
}

/// One notification: the outbox payload, rendered per receiver when sent.
/// Unknown fields are ignored when reading, so a payload written by a newer canaryd still sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Read as `rollout` when absent (payloads written before it).
    #[serde(default)]
    pub scope: Scope,
    /// The rollout; empty for a daemon event.
    pub rollout: String,
    pub team: String,
    pub event: EventKind,
    pub severity: Severity,
    pub incident: IncidentAction,
    /// Shared by every notification of one incident; PagerDuty's `dedup_key`.
    pub group_key: String,
    /// When the decision was taken.
    pub at: DateTime<Utc>,
    /// The decision and its reason, as the state machine worded it.
    pub message: String,
    /// The rollout's phase after the decision (`paused`, `rolled back`, ...).
    pub phase: String,
    pub stage: Option<StageInfo>,
    /// The canary's share of traffic after the decision.
    pub weight: u8,
    /// The latest analysis, one row per check.
    pub checks: Vec<CheckRow>,
    /// `public_url/rollouts/NAME`, when the daemon has a public URL.
    pub status_url: Option<String>,
    /// Commands that act on the rollout in its new phase (`canaryd resume NAME`, ...).
    pub commands: Vec<String>,
}

/// What the daemon knows when it turns a `Notify` action into a [`Notification`].
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub rollout: &'a str,
    pub team: &'a str,
    pub plan: &'a Plan,
    /// The rollout's state before the step (anchors the incident).
    pub before: &'a RolloutState,
    /// Its state after the step.
    pub after: &'a RolloutState,
    pub at: DateTime<Utc>,
    /// The latest analysis's check results (empty when there is none).
    pub evidence: &'a [CheckResult],
    /// `[server] public_url`, for the status link.
    pub public_url: Option<&'a str>,
}

impl Notification {
    /// The notification for one `Action::Notify { event, severity, message }` of a step.
    pub fn from_action(
        ctx: &Context<'_>,
        event: EventKind,
        severity: Severity,
        message: &str,
    ) -> Notification {
        let stage = ctx
            .after
            .phase
            .stage()
            .or(ctx.before.phase.stage())
            .and_then(|i| {
                ctx.plan.stages.get(i).map(|s| StageInfo {
                    number: i + 1,
                    of: ctx.plan.stages.len(),
                    name: s.name.clone(),
                    weight: s.weight,
                })
            });
        Notification {
            scope: Scope::Rollout,
            rollout: ctx.rollout.to_string(),
            team: ctx.team.to_string(),
            event,
            severity,
            incident: incident_action(event, severity),
            group_key: group_key(ctx.rollout, ctx.before.stage_started_at, ctx.at),
            at: ctx.at,
            message: message.to_string(),
            phase: ctx.after.phase.name().to_string(),
            stage,
            weight: ctx.after.weight,
            checks: ctx.evidence.iter().map(CheckRow::from_result).collect(),
            status_url: ctx.public_url.map(|base| status_url(base, ctx.rollout)),
            commands: commands(&ctx.after.phase)
                .iter()
                .map(|c| super::command_line::command_line(*c, ctx.rollout, ctx.public_url))
                .collect(),
        }
    }
}

impl Notification {
    /// The notification of a daemon event (not about one rollout): incident `key`, a link to
    /// the overview when the daemon has a public URL, no commands.
    pub fn daemon(
        event: EventKind,
        severity: Severity,
        message: String,
        key: String,
        at: DateTime<Utc>,
        public_url: Option<&str>,
    ) -> Notification {
        Notification {
            scope: Scope::Daemon,
            rollout: String::new(),
            team: String::new(),
            event,
            severity,
            incident: incident_action(event, severity),
            group_key: key,
            at,
            message,
            phase: String::new(),
            stage: None,
            weight: 0,
            checks: Vec::new(),
            status_url: public_url.map(|base| format!("{}/", base.trim_end_matches('/'))),
            commands: Vec::new(),
        }
    }

    /// The rollout it is about; `None` for a daemon event.
    pub fn about_rollout(&self) -> Option<&str> {
        match self.scope {
            Scope::Rollout => Some(&self.rollout),
            Scope::Daemon => None,
        }
    }

    /// This notification turned into the resolve of incident `key` (what is over is over).
    pub fn resolving(mut self, key: String) -> Notification {
        self.incident = IncidentAction::Resolve;
        self.group_key = key;
        self
    }
}

/// `BASE/rollouts/NAME`, with one slash between them.
pub fn status_url(public_url: &str, rollout: &str) -> String {
    format!("{}/rollouts/{rollout}", public_url.trim_end_matches('/'))
}

/// The commands that make sense in a phase, most likely first.
pub fn commands(phase: &Phase) -> &'static [Command] {
    match phase {
        Phase::Pending => &[Command::Start],
        Phase::Progressing { .. } => &[Command::Pause, Command::Rollback, Command::Promote],
        Phase::WaitingApproval { .. } => &[Command::Approve, Command::Rollback],
        Phase::Paused { .. } => &[Command::Resume, Command::Rollback, Command::Abort],
        Phase::RolledBack { .. } => &[Command::Start],
        Phase::Succeeded => &[Command::Rollback],
        Phase::Aborted => &[],
        Phase::EmergencyStopped { .. } => &[Command::ClearEmergency],
    }
}
