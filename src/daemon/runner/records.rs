//! The pure part of a step: what the machine's actions become in the store, beside the state.
//! `Audit` actions become audit rows (and a `RunStarted` one the run's record), a `SetWeight`
//! the actuator intent with its idempotency key, a `Notify` the outbox messages for the
//! receivers the rule routes it to. No I/O, no clock: the runner reads the evidence rows the
//! notifications carry beforehand and hands in the instant of the step. It also says when a
//! step ends what the rollout's open incidents were about ([`incidents_over`]).

use chrono::{DateTime, Utc};

use crate::notify::Notification;
use crate::notify::notification::CheckRow;
use crate::rollout::{Action, AuditAction, EventKind, Phase, RolloutState};
use crate::rules::RolloutRule;
use crate::store::{NewAnalysis, NewAudit, NewIntent, NewMessage, NewRun};

/// The serde (kebab-case) name of a value, for the store's string columns.
fn kebab<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

/// The outbox messages one notification becomes for the receivers a rule routes it to.
pub fn messages(rule: &RolloutRule, n: &Notification, index: usize) -> Vec<NewMessage> {
    match crate::notify::outbox_messages(&rule.routes, n, index) {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(rollout = %n.rollout, error = %e, "Could not encode a notification.");
            Vec::new()
        }
    }
}

/// One step of a rollout, as far as its records need it.
pub(super) struct Stepped<'a> {
    pub(super) rollout: &'a str,
    pub(super) rule: &'a RolloutRule,
    /// The state before the step.
    pub(super) before: &'a RolloutState,
    /// The state after it.
    pub(super) after: &'a RolloutState,
    pub(super) at: DateTime<Utc>,
    pub(super) public_url: Option<&'a str>,
}

/// Whether any of `actions` is a notification, i.e. needs the evidence rows.
pub(super) fn notifies(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::Notify { .. }))
}

/// The records of a step's `actions` (the analysis is the caller's to add). `rows` are the
/// evidence table every notification of the step carries.
pub(super) fn records(step: &Stepped<'_>, actions: &[Action], rows: &[CheckRow]) -> Record {
    let now = step.at;
    let mut record = Record::default();
    for (seq, action) in actions.iter().enumerate() {
        let action_ref = action;
        match action {
            Action::SetWeight { weight, previous } => {
                let stamp = now
                    .timestamp_nanos_opt()
                    .unwrap_or_else(|| now.timestamp_micros());
                record.intent = Some(NewIntent {
                    idempotency_key: format!("{}/{stamp}/{previous}-{weight}", step.rollout),
                    weight: *weight,
                    previous_weight: *previous,
                });
            }
            Action::Notify {
                event,
                severity,
                message,
            } => {
                let ctx = crate::notify::Context {
                    rollout: step.rollout,
                    team: &step.rule.team,
                    plan: &step.rule.plan,
                    before: step.before,
                    after: step.after,
                    at: now,
                    // The rows are filled in below.
                    evidence: &[],
                    public_url: step.public_url,
                };
                let mut n = Notification::from_action(&ctx, *event, *severity, message);
                n.checks = rows.to_vec();
                record.outbox.extend(messages(step.rule, &n, seq));
            }
            Action::Audit {
                action,
                triggered_by,
                ..
            } => {
                if *action == AuditAction::RunStarted {
                    record.run_started = Some(NewRun {
                        canary: step.after.run.canary.clone(),
                        started_by: triggered_by.to_string(),
                    });
                }
                record.audit.extend(audit_row(action_ref));
            }
        }
    }
    record
}

/// The audit row an `Action::Audit` is stored as (none for other actions).
pub(super) fn audit_row(action: &Action) -> Option<NewAudit> {
    match action {
        Action::Audit {
            action,
            previous_weight,
            new_weight,
            reason,
            triggered_by,
        } => Some(NewAudit {
            action: kebab(action),
            previous_weight: Some(*previous_weight),
            new_weight: Some(*new_weight),
            reason: reason.clone(),
            triggered_by: triggered_by.to_string(),
        }),
        Action::SetWeight { .. } | Action::Notify { .. } => None,
    }
}

/// The stage name a weight change belongs to, for actuators.
pub fn stage_label(state: &RolloutState, rule: &RolloutRule) -> String {
    match state.phase.stage().and_then(|s| rule.plan.stages.get(s)) {
        Some(stage) => stage.name.clone(),
        None => crate::daemon::status::phase_name(&state.phase).to_string(),
    }
}

/// What a step records besides the state (see [`crate::store::Step`]).
#[derive(Default)]
pub(super) struct Record {
    pub(super) audit: Vec<NewAudit>,
    pub(super) intent: Option<NewIntent>,
    pub(super) outbox: Vec<NewMessage>,
    pub(super) analysis: Option<NewAnalysis>,
    pub(super) run_started: Option<NewRun>,
}

/// The incident key of a rollout's metric backend failing: one open at a time.
pub fn backend_incident(rollout: &str) -> String {
    format!("canaryd/{rollout}/backend-errors")
}

/// When a step ends what the rollout's open incidents were about, the event that ends them and
/// its sentence: a new run begins (a rolled-back rollout retried, a new canary), or the run
/// finishes (succeeded or aborted). Every incident of the rollout still open is then resolved.
pub(super) fn incidents_over(
    before: &RolloutState,
    after: &RolloutState,
) -> Option<(EventKind, String)> {
    if after.run.number > before.run.number && before.phase != Phase::Pending {
        return Some((
            EventKind::Started,
            format!(
                "Resolved: run {} (canary `{}`) began; run {} is over.",
                after.run.number, after.run.canary, before.run.number
            ),
        ));
    }
    if after.phase == before.phase {
        return None;
    }
    match after.phase {
        Phase::Succeeded => Some((
            EventKind::Succeeded,
            "Resolved: the rollout succeeded.".to_string(),
        )),
        Phase::Aborted => Some((
            EventKind::Aborted,
            "Resolved: the rollout was aborted.".to_string(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Severity, TriggeredBy};
    use crate::rules::{KnownNames, parse_rule};
    use chrono::TimeZone;

    /// A shipped example rule file: every event to `team-email`, critical ones also to `pager`.
    const RULE: &str = include_str!("../../../rules/checkout-api.toml");

    #[test]
    fn a_steps_actions_become_its_audit_rows_intent_run_and_routed_messages() {
        let rule = parse_rule(
            std::path::Path::new("checkout-api.toml"),
            RULE,
            &KnownNames::any(),
        )
        .unwrap();
        let before = RolloutState::new();
        let mut after = before.clone();
        after.run.canary = "v2".to_string();
        after.weight = 5;
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let alice = TriggeredBy::Operator("alice".to_string());
        let actions = vec![
            Action::Audit {
                action: AuditAction::RunStarted,
                previous_weight: 0,
                new_weight: 5,
                reason: "run 1 started".to_string(),
                triggered_by: alice.clone(),
            },
            Action::SetWeight {
                weight: 5,
                previous: 0,
            },
            Action::Notify {
                event: EventKind::RolledBack,
                severity: Severity::Critical,
                message: "rolled back".to_string(),
            },
        ];
        let rows: Vec<CheckRow> = vec![
            serde_json::from_value(serde_json::json!({
                "check": "p99", "verdict": "fail", "reason": "slower", "measure": "median",
                "confidence": 0.99
            }))
            .unwrap(),
        ];
        assert!(notifies(&actions));
        assert!(
            !notifies(&actions[..2]),
            "no notification, no evidence read"
        );

        let stepped = Stepped {
            rollout: "checkout-api",
            rule: &rule,
            before: &before,
            after: &after,
            at,
            public_url: None,
        };
        let record = records(&stepped, &actions, &rows);

        assert_eq!(record.audit.len(), 1);
        let audit = &record.audit[0];
        assert_eq!(audit.action, "run-started");
        assert_eq!(
            (audit.previous_weight, audit.new_weight),
            (Some(0), Some(5))
        );
        assert_eq!(audit.triggered_by, alice.to_string());
        let run = record
            .run_started
            .as_ref()
            .expect("a RunStarted audit records the run");
        assert_eq!(run.canary, "v2");
        assert_eq!(run.started_by, alice.to_string());
        let intent = record
            .intent
            .as_ref()
            .expect("a SetWeight records an intent");
        assert_eq!((intent.previous_weight, intent.weight), (0, 5));
        assert_eq!(
            intent.idempotency_key,
            format!("checkout-api/{}/0-5", at.timestamp_nanos_opt().unwrap())
        );
        let receivers: Vec<&str> = record.outbox.iter().map(|m| m.receiver.as_str()).collect();
        assert_eq!(receivers, ["team-email", "pager"]);
        for message in &record.outbox {
            assert_eq!(message.payload["checks"][0]["check"], "p99");
        }
        assert!(
            record.analysis.is_none(),
            "the analysis is the caller's to add"
        );
    }

    #[test]
    fn incidents_are_over_when_a_run_begins_after_another_or_finishes() {
        let state = |phase: Phase, run: u32| {
            let mut s = RolloutState::new();
            s.phase = phase;
            s.run.number = run;
            s
        };
        let rolled_back = Phase::RolledBack {
            reason: "failed".to_string(),
        };
        let progressing = Phase::Progressing { stage: 0 };
        let paused = Phase::Paused {
            stage: 1,
            reason: "check failed".to_string(),
            resume_to: crate::rollout::ResumeTo::Progressing,
        };
        let cases = [
            (
                "retried after a rollback",
                state(rolled_back.clone(), 1),
                state(progressing.clone(), 2),
                Some(EventKind::Started),
            ),
            (
                "first run of a new rollout",
                state(Phase::Pending, 1),
                state(progressing.clone(), 1),
                None,
            ),
            (
                "first run (numbered up)",
                state(Phase::Pending, 0),
                state(progressing.clone(), 1),
                None,
            ),
            (
                "succeeded",
                state(progressing.clone(), 1),
                state(Phase::Succeeded, 1),
                Some(EventKind::Succeeded),
            ),
            (
                "aborted",
                state(paused.clone(), 1),
                state(Phase::Aborted, 1),
                Some(EventKind::Aborted),
            ),
            (
                "paused: not over",
                state(progressing.clone(), 1),
                state(paused.clone(), 1),
                None,
            ),
            (
                "rolled back: not over",
                state(progressing.clone(), 1),
                state(rolled_back.clone(), 1),
                None,
            ),
            (
                "still succeeded",
                state(Phase::Succeeded, 1),
                state(Phase::Succeeded, 1),
                None,
            ),
        ];
        for (case, before, after, want) in cases {
            let got = incidents_over(&before, &after).map(|(kind, _)| kind);
            assert_eq!(got, want, "{case}");
        }
    }
}
