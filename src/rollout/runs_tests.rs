//! Table tests of the facts a decision depends on across restarts and outages (backend holds,
//! the fresh analysis after a start), the emergency stop on finished runs, and runs.

use super::*;
use crate::judge::InconclusiveCause;
use crate::rollout::{AnalysisOutcome, AnalysisReport, CheckOutcome, StartPolicy};
use chrono::TimeZone;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

/// 10% → 50%, one pass and one minute each.
fn plan(start: StartPolicy) -> Plan {
    let stage = |name: &str, weight| Stage {
        name: name.to_string(),
        weight,
        min_duration: Duration::from_secs(60),
        max_duration: None,
        required_passes: 1,
        approval: false,
    };
    Plan {
        stages: vec![stage("c10", 10), stage("c50", 50)],
        rollback_to: RollbackTarget::Zero,
        warmup: Duration::ZERO,
        max_inconclusive: 5,
        triggers: Vec::new(),
        start,
    }
}

fn pass() -> Event {
    Event::Analysis(AnalysisReport {
        checks: vec![CheckOutcome::pass("latency")],
        overall: AnalysisOutcome::Pass,
    })
}

fn op() -> TriggeredBy {
    TriggeredBy::Operator("ana".into())
}

fn new_run(canary: &str, emergency: bool) -> Event {
    Event::NewRun {
        canary: canary.into(),
        by: op(),
        reason: "deploy".into(),
        emergency,
    }
}

fn rule(fingerprint: &str, previous: &str, canary: &str) -> Event {
    Event::RuleChanged {
        fingerprint: fingerprint.into(),
        previous: previous.into(),
        canary: canary.into(),
        emergency: false,
    }
}

fn backend() -> Event {
    Event::BackendError {
        error: "HTTP 500".into(),
    }
}

/// Apply `events` (at their seconds) from `state`; panics on a refused step.
fn apply(
    plan: &Plan,
    mut state: RolloutState,
    events: &[(i64, Event)],
) -> (RolloutState, Vec<Action>) {
    let mut all = Vec::new();
    for (secs, event) in events {
        let (next, actions) = step(&state, plan, event.clone(), at(*secs))
            .unwrap_or_else(|e| panic!("{event:?} at {secs}s: {e}"));
        state = next;
        all.extend(actions);
    }
    (state, all)
}

/// Run 1 of `v2` at 10% with its pass in at 10 s, the minute not over.
fn with_pass() -> RolloutState {
    apply(
        &plan(StartPolicy::Auto),
        RolloutState::new(),
        &[(0, new_run("v2", false)), (10, pass())],
    )
    .0
}

fn audits(actions: &[Action]) -> Vec<(AuditAction, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Audit { action, reason, .. } => Some((*action, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_backend_outage_holds_a_stage_whose_evidence_is_in_until_an_analysis_arrives() {
    let p = plan(StartPolicy::Auto);
    let (held, actions) = apply(
        &p,
        with_pass(),
        &[(20, backend()), (30, backend()), (120, Event::Tick)],
    );
    assert_eq!(
        (held.phase.stage(), held.weight, held.backend_errors),
        (Some(0), 10, 2)
    );
    // Only the first failure of the series is audited.
    let audited = audits(&actions);
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].0, AuditAction::BackendHeld);
    // The count is part of the stored state: a state read back after a restart still holds.
    let stored: RolloutState =
        serde_json::from_str(&serde_json::to_string(&held).unwrap()).unwrap();
    let (after, _) = apply(
        &p,
        stored,
        &[(130, Event::DaemonStarted), (131, Event::Tick)],
    );
    assert_eq!(after.weight, 10);
    // A fresh passing analysis lifts the hold and the stage advances.
    let (after, _) = apply(&p, after, &[(140, pass())]);
    assert_eq!((after.weight, after.backend_errors), (50, 0));
}

#[test]
fn after_a_start_no_tick_advances_before_a_fresh_analysis() {
    let p = plan(StartPolicy::Auto);
    // Passes in, minute over, the daemon was down: its start holds the stage.
    let (s, _) = apply(
        &p,
        with_pass(),
        &[(3600, Event::DaemonStarted), (3601, Event::Tick)],
    );
    assert_eq!((s.weight, s.awaiting_analysis), (10, true));
    // An inconclusive analysis is fresh but resets the passes: still no advance.
    let inconclusive = Event::Analysis(AnalysisReport {
        checks: vec![CheckOutcome::inconclusive(
            "latency",
            InconclusiveCause::NoData,
        )],
        overall: AnalysisOutcome::Inconclusive,
    });
    let (s, _) = apply(&p, s, &[(3610, inconclusive), (3611, Event::Tick)]);
    assert_eq!((s.weight, s.awaiting_analysis, s.passes), (10, false, 0));
    let (s, _) = apply(&p, s, &[(3620, pass())]);
    assert_eq!(s.weight, 50);
    // A start of a rollout that is not progressing changes nothing.
    let (pending, actions) = apply(&p, RolloutState::new(), &[(0, Event::DaemonStarted)]);
    assert_eq!((pending, actions), (RolloutState::new(), Vec::new()));
}

#[test]
fn an_emergency_stop_and_its_clearing_leave_finished_runs_as_they_are() {
    let p = plan(StartPolicy::Auto);
    let stop = Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "incident");
    let clear = Event::command(Command::ClearEmergency, op(), "over");
    let succeeded = apply(
        &p,
        with_pass(),
        &[(60, Event::Tick), (70, pass()), (130, Event::Tick)],
    )
    .0;
    assert_eq!(
        (&succeeded.phase, succeeded.weight),
        (&Phase::Succeeded, 100)
    );
    let rolled_back = apply(
        &p,
        with_pass(),
        &[(20, Event::command(Command::Rollback, op(), "bad"))],
    )
    .0;
    let aborted = apply(
        &p,
        with_pass(),
        &[(20, Event::command(Command::Abort, op(), "no"))],
    )
    .0;
    for finished in [succeeded, rolled_back, aborted] {
        let (after, actions) = apply(&p, finished.clone(), &[(200, stop.clone())]);
        assert_eq!(
            (&after.phase, after.weight),
            (&finished.phase, finished.weight)
        );
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::SetWeight { .. })),
            "{actions:?}"
        );
        assert_eq!(audits(&actions)[0].0, AuditAction::EmergencyStopped);
        // Clearing is not for them, and resume cannot move them.
        assert!(step(&after, &p, clear.clone(), at(201)).is_err());
        assert!(
            step(
                &after,
                &p,
                Event::command(Command::Resume, op(), "go"),
                at(202)
            )
            .is_err()
        );
    }
    // A running one goes to 0% and comes back paused at its stage, still at 0%.
    let (stopped, _) = apply(&p, with_pass(), &[(20, stop.clone()), (30, clear.clone())]);
    assert_eq!(stopped.weight, 0);
    assert!(
        matches!(stopped.phase, Phase::Paused { stage: 0, .. }),
        "{:?}",
        stopped.phase
    );
}

#[test]
fn a_new_version_is_a_new_run_from_the_first_stage() {
    let p = plan(StartPolicy::Auto);
    let (s, actions) = apply(&p, RolloutState::new(), &[(0, new_run("v2", false))]);
    assert_eq!(
        (s.run.number, s.run.canary.as_str(), s.weight),
        (1, "v2", 10)
    );
    assert!(
        audits(&actions)[0].1.contains("run 1 (canary `v2`)"),
        "{actions:?}"
    );
    // The same version while it runs is refused; a finished run can be run again.
    assert!(matches!(
        step(&s, &p, new_run("v2", false), at(5)),
        Err(StepError::AlreadyRunning { run: 1, .. })
    ));
    let (rolled, _) = apply(
        &p,
        s.clone(),
        &[(20, Event::command(Command::Rollback, op(), "bad"))],
    );
    let (again, actions) = apply(&p, rolled, &[(30, new_run("v3", false))]);
    assert_eq!(
        (again.run.number, again.run.canary.as_str(), again.weight),
        (2, "v3", 10)
    );
    assert_eq!(again.phase, Phase::Progressing { stage: 0 });
    let why = &audits(&actions)[0];
    assert_eq!(why.0, AuditAction::RunStarted);
    assert!(
        why.1.contains("run 1 (canary `v2`) ended rolled back"),
        "{why:?}"
    );
    // Another version while a run is at 50% supersedes it, back at the first stage.
    let at_50 = apply(&p, again, &[(40, pass()), (100, Event::Tick)]).0;
    assert_eq!(at_50.weight, 50);
    let (next, actions) = apply(&p, at_50, &[(110, new_run("v4", false))]);
    assert_eq!((next.run.number, next.weight), (3, 10));
    assert!(actions.contains(&Action::SetWeight {
        weight: 10,
        previous: 50
    }));
    assert!(
        audits(&actions)[0]
            .1
            .contains("superseded while progressing")
    );
    // During an emergency stop a new run is registered at 0%, stopped.
    let (stopped, actions) = apply(&p, next, &[(120, new_run("v5", true))]);
    assert_eq!(stopped.weight, 0);
    assert!(matches!(
        stopped.phase,
        Phase::EmergencyStopped { stage: 0, .. }
    ));
    assert!(actions.contains(&Action::SetWeight {
        weight: 0,
        previous: 10
    }));
}

#[test]
fn rule_changes_are_recorded_and_a_changed_canary_starts_a_run_unless_start_is_manual() {
    let auto = plan(StartPolicy::Auto);
    let s = with_pass();
    // The same rule: nothing to record.
    let (same, actions) = apply(&auto, s.clone(), &[(20, rule("a", "a", "v2"))]);
    assert_eq!((same, actions), (s.clone(), Vec::new()));
    // Another fingerprint, same canary: a history entry naming both fingerprints.
    let (edited, actions) = apply(&auto, s.clone(), &[(20, rule("b", "a", "v2"))]);
    assert_eq!(edited.run.number, 1);
    let why = &audits(&actions)[0];
    assert_eq!(why.0, AuditAction::RuleChanged);
    assert!(why.1.contains("fingerprint a -> b"), "{why:?}");
    // A new canary version in the file: a new run at once.
    let (next, actions) = apply(&auto, s.clone(), &[(20, rule("c", "a", "v3"))]);
    assert_eq!(
        (
            next.run.number,
            next.run.canary.as_str(),
            next.run.rule_canary.as_str()
        ),
        (2, "v3", "v3")
    );
    assert!(audits(&actions)[0].1.contains("canary `v2` -> `v3`"));
    // With `start = "manual"` it is recorded and waits for `start`.
    let manual = plan(StartPolicy::Manual);
    let (waiting, actions) = apply(&manual, s.clone(), &[(20, rule("c", "a", "v3"))]);
    assert_eq!(
        (
            waiting.run.number,
            waiting.run.canary.as_str(),
            waiting.weight
        ),
        (1, "v2", 10)
    );
    assert!(audits(&actions)[0].1.contains("waits for `canaryd start`"));
    // A state stored before runs adopts the rule's version without a new run or an entry.
    let old = RolloutState {
        run: Run::default(),
        ..s
    };
    let (adopted, actions) = apply(&auto, old, &[(20, rule("a", "a", "v2"))]);
    assert_eq!((adopted.run.number, adopted.run.canary.as_str()), (1, "v2"));
    assert!(actions.is_empty());
}

#[test]
fn a_removed_rule_pauses_a_run_in_progress_and_is_recorded_for_any_other() {
    let p = plan(StartPolicy::Auto);
    let gone = || Event::RuleRemoved {
        what: "rules/web.toml was removed".into(),
    };
    let (paused, actions) = apply(&p, with_pass(), &[(20, gone())]);
    assert!(
        matches!(paused.phase, Phase::Paused { stage: 0, .. }),
        "{:?}",
        paused.phase
    );
    assert_eq!(paused.weight, 10);
    assert!(audits(&actions)[0].1.contains("rules/web.toml was removed"));
    let rolled = apply(
        &p,
        with_pass(),
        &[(20, Event::command(Command::Rollback, op(), "x"))],
    )
    .0;
    let (after, actions) = apply(&p, rolled.clone(), &[(30, gone())]);
    assert_eq!((&after.phase, after.weight), (&rolled.phase, rolled.weight));
    assert_eq!(audits(&actions)[0].0, AuditAction::RuleChanged);
}
