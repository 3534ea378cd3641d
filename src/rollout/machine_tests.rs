//! The state machine's table of scenarios and its focused tests.

use super::*;
use crate::judge::InconclusiveCause;
use crate::rollout::Trigger;
use crate::rollout::event::{AnalysisOutcome, AnalysisReport, CheckOutcome};
use crate::rollout::plan::{NoDataPolicy, Sustain, TriggerAction};
use chrono::TimeZone;

const MIN: i64 = 60;

/// Events at seconds after the start.
type Timeline = Vec<(i64, Event)>;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

fn stage(name: &str, weight: u8) -> Stage {
    Stage {
        name: name.to_string(),
        weight,
        min_duration: Duration::from_secs(10 * 60),
        max_duration: None,
        required_passes: 3,
        approval: false,
    }
}

fn trigger(check: &str, action: TriggerAction) -> Trigger {
    Trigger {
        check: check.into(),
        action,
        sustain: Sustain::Immediately,
        no_data: NoDataPolicy::Inconclusive,
        dry_run: false,
        window: Duration::ZERO,
    }
}

/// 10% → 25% → 50%, 10 minutes and 3 passes each; error-rate rolls back, latency pauses,
/// cpu notifies.
fn plan() -> Plan {
    Plan {
        stages: vec![stage("c10", 10), stage("c25", 25), stage("c50", 50)],
        rollback_to: RollbackTarget::PreviousStage,
        warmup: Duration::ZERO,
        max_inconclusive: 5,
        triggers: vec![
            trigger("error-rate", TriggerAction::Rollback),
            trigger("latency", TriggerAction::Pause),
            trigger("cpu", TriggerAction::Notify),
        ],
        start: crate::rollout::StartPolicy::Auto,
    }
}

fn with(f: impl FnOnce(&mut Plan)) -> Plan {
    let mut p = plan();
    f(&mut p);
    p
}

fn op() -> TriggeredBy {
    TriggeredBy::Operator("ana".to_string())
}

fn cmd(c: Command) -> Event {
    Event::command(c, op(), "test")
}

fn report(overall: AnalysisOutcome, checks: Vec<CheckOutcome>) -> Event {
    Event::Analysis(AnalysisReport { checks, overall })
}

const CHECKS: [&str; 3] = ["error-rate", "latency", "cpu"];

fn pass() -> Event {
    let checks = CHECKS.iter().map(|c| CheckOutcome::pass(*c));
    report(AnalysisOutcome::Pass, checks.collect())
}

/// `check` fails; the others pass; the overall outcome is `overall`.
fn failing(check: &str, overall: AnalysisOutcome) -> Event {
    let checks = CHECKS.iter().map(|c| match *c == check {
        true => CheckOutcome::fail(*c),
        false => CheckOutcome::pass(*c),
    });
    report(overall, checks.collect())
}

fn fail(check: &str) -> Event {
    failing(check, AnalysisOutcome::Fail)
}

/// `check` is inconclusive for `cause`; the others pass.
fn inconclusive(check: &str, cause: InconclusiveCause, overall: AnalysisOutcome) -> Event {
    let checks = CHECKS.iter().map(|c| match *c == check {
        true => CheckOutcome::inconclusive(*c, cause),
        false => CheckOutcome::pass(*c),
    });
    report(overall, checks.collect())
}

/// `check` has no data; the others pass.
fn no_data(check: &str, overall: AnalysisOutcome) -> Event {
    inconclusive(check, InconclusiveCause::NoData, overall)
}

fn outcome(o: AnalysisOutcome) -> Event {
    let checks = CHECKS.iter().map(|c| CheckOutcome::pass(*c));
    report(o, checks.collect())
}

/// Start at 0 and reach stage 2 (25%) at minute 10.
fn to_stage_2() -> Vec<(i64, Event)> {
    vec![
        (0, cmd(Command::Start)),
        (MIN, pass()),
        (2 * MIN, pass()),
        (3 * MIN, pass()),
        (10 * MIN, Event::Tick),
    ]
}

fn run(plan: &Plan, events: Vec<(i64, Event)>) -> (RolloutState, Vec<Action>) {
    let mut state = RolloutState::new();
    let mut all = Vec::new();
    for (secs, event) in events {
        let (next, actions) = step(&state, plan, event.clone(), at(secs))
            .unwrap_or_else(|e| panic!("{event:?} at {secs}s: {e}"));
        state = next;
        all.extend(actions);
    }
    (state, all)
}

fn then(mut events: Vec<(i64, Event)>, more: Vec<(i64, Event)>) -> Vec<(i64, Event)> {
    events.extend(more);
    events
}

fn repeat(from_min: i64, n: i64, event: Event) -> Vec<(i64, Event)> {
    (0..n)
        .map(|i| ((from_min + i) * MIN, event.clone()))
        .collect()
}

fn notified(actions: &[Action], kind: EventKind) -> Option<Severity> {
    actions.iter().rev().find_map(|a| match a {
        Action::Notify {
            event, severity, ..
        } if *event == kind => Some(*severity),
        _ => None,
    })
}

struct Case {
    name: &'static str,
    plan: Plan,
    events: Vec<(i64, Event)>,
    phase: &'static str,
    stage: Option<usize>,
    weight: u8,
}

fn start() -> Vec<(i64, Event)> {
    vec![(0, cmd(Command::Start))]
}

#[test]
fn scenarios() {
    use AnalysisOutcome as O;
    let fr = "error-rate";
    let for_5m = |p: &mut Plan| p.triggers[0].sustain = Sustain::For(Duration::from_secs(300));
    let cases = vec![
        Case {
            name: "start goes to the first stage",
            plan: plan(),
            events: start(),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "3 passes and 10 minutes advance to 25%",
            plan: plan(),
            events: to_stage_2(),
            phase: "progressing",
            stage: Some(1),
            weight: 25,
        },
        Case {
            name: "passes alone do not advance before the minimum duration",
            plan: plan(),
            events: then(
                start(),
                vec![
                    (MIN, pass()),
                    (2 * MIN, pass()),
                    (3 * MIN, pass()),
                    (9 * MIN, Event::Tick),
                ],
            ),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "time alone does not advance with too few passes",
            plan: plan(),
            events: then(
                start(),
                vec![(MIN, pass()), (2 * MIN, pass()), (60 * MIN, Event::Tick)],
            ),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "a marginal analysis resets the consecutive passes",
            plan: plan(),
            events: then(
                start(),
                vec![
                    (MIN, pass()),
                    (2 * MIN, pass()),
                    (3 * MIN, outcome(O::Marginal)),
                    (4 * MIN, pass()),
                    (20 * MIN, Event::Tick),
                ],
            ),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "an overall pass with a no-data check is not evidence",
            plan: plan(),
            events: then(
                start(),
                then(
                    repeat(1, 3, no_data("cpu", O::Pass)),
                    vec![(20 * MIN, Event::Tick)],
                ),
            ),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "the analysis that completes the evidence after the minimum advances at once",
            plan: plan(),
            events: then(
                start(),
                vec![(9 * MIN, pass()), (10 * MIN, pass()), (11 * MIN, pass())],
            ),
            phase: "progressing",
            stage: Some(1),
            weight: 25,
        },
        Case {
            name: "critical failure at 25% rolls back to 10%",
            plan: plan(),
            events: then(to_stage_2(), vec![(11 * MIN, fail(fr))]),
            phase: "rolled back",
            stage: None,
            weight: 10,
        },
        Case {
            name: "critical failure at the first stage rolls back to 0%",
            plan: plan(),
            events: then(start(), vec![(MIN, fail(fr))]),
            phase: "rolled back",
            stage: None,
            weight: 0,
        },
        Case {
            name: "rollback-to zero goes to 0% from 25%",
            plan: with(|p| p.rollback_to = RollbackTarget::Zero),
            events: then(to_stage_2(), vec![(11 * MIN, fail(fr))]),
            phase: "rolled back",
            stage: None,
            weight: 0,
        },
        Case {
            name: "a check failing with a good overall score still rolls back",
            plan: plan(),
            events: then(start(), vec![(MIN, failing(fr, O::Pass))]),
            phase: "rolled back",
            stage: None,
            weight: 0,
        },
        Case {
            name: "error rate failing for 4 minutes with sustain 5m holds",
            plan: with(for_5m),
            events: then(start(), repeat(1, 5, fail(fr))),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "error rate failing for 5 minutes with sustain 5m rolls back",
            plan: with(for_5m),
            events: then(start(), repeat(1, 6, fail(fr))),
            phase: "rolled back",
            stage: None,
            weight: 0,
        },
        Case {
            name: "a passing analysis restarts the sustain clock",
            plan: with(for_5m),
            events: then(
                start(),
                then(
                    repeat(1, 4, fail(fr)),
                    then(vec![(5 * MIN, pass())], repeat(6, 5, fail(fr))),
                ),
            ),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "sustain 3 consecutive: 2 failures hold",
            plan: with(|p| p.triggers[0].sustain = Sustain::Consecutive(3)),
            events: then(start(), repeat(1, 2, fail(fr))),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "sustain 3 consecutive: 3 failures roll back",
            plan: with(|p| p.triggers[0].sustain = Sustain::Consecutive(3)),
            events: then(start(), repeat(1, 3, fail(fr))),
            phase: "rolled back",
            stage: None,
            weight: 0,
        },
        Case {
            name: "4 inconclusive in a row hold",
            plan: plan(),
            events: then(start(), repeat(1, 4, outcome(O::Inconclusive))),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "5 inconclusive in a row pause",
            plan: plan(),
            events: then(start(), repeat(1, 5, outcome(O::Inconclusive))),
            phase: "paused",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "marginal counts toward the inconclusive streak",
            plan: plan(),
            events: then(
                start(),
                then(
                    repeat(1, 3, outcome(O::Marginal)),
                    repeat(4, 2, outcome(O::Inconclusive)),
                ),
            ),
            phase: "paused",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "approval gate waits for a person",
            plan: with(|p| p.stages[0].approval = true),
            events: then(
                to_stage_2(),
                vec![(11 * MIN, pass()), (60 * MIN, Event::Tick)],
            ),
            phase: "waiting for approval",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "approve advances past the gate",
            plan: with(|p| p.stages[0].approval = true),
            events: then(to_stage_2(), vec![(11 * MIN, cmd(Command::Approve))]),
            phase: "progressing",
            stage: Some(1),
            weight: 25,
        },
        Case {
            name: "dry-run rollback never changes the weight",
            plan: with(|p| p.triggers[0].dry_run = true),
            events: then(start(), repeat(1, 4, failing(fr, O::Marginal))),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "warm-up analyses are not counted",
            plan: with(|p| p.warmup = Duration::from_secs(5 * 60)),
            events: then(start(), then(repeat(1, 3, pass()), repeat(2, 3, fail(fr)))),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "warm-up passes do not count toward the stage",
            plan: with(|p| p.warmup = Duration::from_secs(5 * 60)),
            events: then(
                start(),
                then(repeat(1, 3, pass()), vec![(30 * MIN, Event::Tick)]),
            ),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "a stage past its max duration pauses",
            plan: with(|p| p.stages[0].max_duration = Some(Duration::from_secs(30 * 60))),
            events: then(start(), vec![(MIN, pass()), (30 * MIN, Event::Tick)]),
            phase: "paused",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "an overall fail with no trigger pauses for review",
            plan: plan(),
            events: then(start(), vec![(MIN, outcome(O::Fail))]),
            phase: "paused",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "a pause trigger pauses",
            plan: plan(),
            events: then(start(), vec![(MIN, failing("latency", O::Pass))]),
            phase: "paused",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "a notify trigger changes nothing",
            plan: plan(),
            events: then(start(), repeat(1, 3, failing("cpu", O::Pass))),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "no data holds by default",
            plan: plan(),
            events: then(start(), repeat(1, 3, no_data(fr, O::Inconclusive))),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "no data with policy pause pauses",
            plan: with(|p| p.triggers[0].no_data = NoDataPolicy::Pause),
            events: then(start(), vec![(MIN, no_data(fr, O::Inconclusive))]),
            phase: "paused",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "no data with policy fail fires the rollback trigger",
            plan: with(|p| p.triggers[0].no_data = NoDataPolicy::Fail),
            events: then(to_stage_2(), vec![(11 * MIN, no_data(fr, O::Inconclusive))]),
            phase: "rolled back",
            stage: None,
            weight: 10,
        },
        Case {
            name: "after the last stage the rollout succeeds at 100%",
            plan: plan(),
            events: then(
                to_stage_2(),
                then(
                    repeat(11, 3, pass()),
                    then(
                        vec![(20 * MIN, Event::Tick)],
                        then(repeat(21, 3, pass()), vec![(30 * MIN, Event::Tick)]),
                    ),
                ),
            ),
            phase: "succeeded",
            stage: None,
            weight: 100,
        },
        Case {
            name: "a paused rollout ignores ticks and analyses",
            plan: plan(),
            events: then(
                start(),
                then(
                    vec![(MIN, cmd(Command::Pause))],
                    then(
                        repeat(2, 3, pass()),
                        vec![(30 * MIN, fail(fr)), (40 * MIN, Event::Tick)],
                    ),
                ),
            ),
            phase: "paused",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "resume continues at the same stage",
            plan: plan(),
            events: then(
                to_stage_2(),
                vec![
                    (11 * MIN, cmd(Command::Pause)),
                    (20 * MIN, cmd(Command::Resume)),
                ],
            ),
            phase: "progressing",
            stage: Some(1),
            weight: 25,
        },
        Case {
            name: "resume restarts the stage clock and evidence",
            plan: plan(),
            events: then(
                start(),
                vec![
                    (MIN, pass()),
                    (2 * MIN, pass()),
                    (3 * MIN, cmd(Command::Pause)),
                    (4 * MIN, cmd(Command::Resume)),
                    (5 * MIN, pass()),
                    (20 * MIN, Event::Tick),
                ],
            ),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "promote skips the evidence",
            plan: plan(),
            events: then(start(), vec![(MIN, cmd(Command::Promote))]),
            phase: "progressing",
            stage: Some(1),
            weight: 25,
        },
        Case {
            name: "an operator rollback from 25% goes to 10%",
            plan: plan(),
            events: then(to_stage_2(), vec![(11 * MIN, cmd(Command::Rollback))]),
            phase: "rolled back",
            stage: None,
            weight: 10,
        },
        Case {
            name: "start after a rollback retries from the first stage",
            plan: plan(),
            events: then(
                to_stage_2(),
                vec![(11 * MIN, fail(fr)), (20 * MIN, cmd(Command::Start))],
            ),
            phase: "progressing",
            stage: Some(0),
            weight: 10,
        },
        Case {
            name: "abort sends the canary to 0%",
            plan: plan(),
            events: then(to_stage_2(), vec![(11 * MIN, cmd(Command::Abort))]),
            phase: "aborted",
            stage: None,
            weight: 0,
        },
        Case {
            name: "emergency stop sets 0% and beats everything",
            plan: plan(),
            events: then(
                to_stage_2(),
                vec![
                    (
                        11 * MIN,
                        Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "kill file"),
                    ),
                    (12 * MIN, cmd(Command::Resume)),
                    (13 * MIN, cmd(Command::Start)),
                    (14 * MIN, cmd(Command::Promote)),
                    (15 * MIN, pass()),
                    (16 * MIN, Event::Tick),
                ],
            ),
            phase: "emergency-stopped",
            stage: Some(1),
            weight: 0,
        },
        Case {
            name: "clearing an emergency leaves the rollout paused at 0%",
            plan: plan(),
            events: then(
                to_stage_2(),
                vec![
                    (
                        11 * MIN,
                        Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "kill file"),
                    ),
                    (12 * MIN, cmd(Command::ClearEmergency)),
                    (13 * MIN, Event::Tick),
                    (14 * MIN, pass()),
                ],
            ),
            phase: "paused",
            stage: Some(1),
            weight: 0,
        },
        Case {
            name: "resume after a cleared emergency restores the stage weight",
            plan: plan(),
            events: then(
                to_stage_2(),
                vec![
                    (
                        11 * MIN,
                        Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "kill file"),
                    ),
                    (12 * MIN, cmd(Command::ClearEmergency)),
                    (13 * MIN, cmd(Command::Resume)),
                ],
            ),
            phase: "progressing",
            stage: Some(1),
            weight: 25,
        },
    ];
    for case in cases {
        let (state, actions) = run(&case.plan, case.events);
        assert_eq!(
            (state.phase.name(), state.phase.stage(), state.weight),
            (case.phase, case.stage, case.weight),
            "{}\nactions: {actions:#?}",
            case.name
        );
    }
}

/// The no-data rules read the judge's cause: no data and too few points are a lack of data
/// (the `no_data` policy acts, and an overall pass is not evidence); every other cause is an
/// inconclusive check like any other.
#[test]
fn only_no_data_and_too_few_are_a_lack_of_data() {
    use InconclusiveCause as C;
    let lacking = [C::NoData, C::TooFew];
    let others = [
        C::NonFinite,
        C::TooMany,
        C::NotApplicable,
        C::Setting,
        C::SeveralSeries,
        C::NotShown,
        C::Untestable,
    ];
    let fr = "error-rate";
    for cause in lacking.into_iter().chain(others) {
        let lacks = lacking.contains(&cause);
        // With the pause policy, missing data pauses at once.
        let paused = with(|p| p.triggers[0].no_data = NoDataPolicy::Pause);
        let event = inconclusive(fr, cause, AnalysisOutcome::Inconclusive);
        let (s, _) = run(&paused, then(start(), vec![(MIN, event)]));
        assert_eq!(
            s.phase.name() == "paused",
            lacks,
            "{cause:?}: {:?}",
            s.phase
        );
        // With the fail policy, it fires the check's rollback trigger.
        let failing = with(|p| p.triggers[0].no_data = NoDataPolicy::Fail);
        let event = inconclusive(fr, cause, AnalysisOutcome::Inconclusive);
        let (s, _) = run(&failing, then(to_stage_2(), vec![(11 * MIN, event)]));
        assert_eq!(
            s.phase.name() == "rolled back",
            lacks,
            "{cause:?}: {:?}",
            s.phase
        );
        // An overall pass counts as evidence only with data for every check.
        let event = inconclusive("cpu", cause, AnalysisOutcome::Pass);
        let events = then(
            start(),
            then(repeat(1, 3, event), vec![(20 * MIN, Event::Tick)]),
        );
        let (s, _) = run(&plan(), events);
        assert_eq!(
            s.phase.stage() == Some(0),
            lacks,
            "{cause:?}: {:?}",
            s.phase
        );
    }
}

#[test]
fn notifications_carry_the_right_severity() {
    use AnalysisOutcome as O;
    let cases: Vec<(&str, Timeline, EventKind, Severity)> = vec![
        (
            "stage advanced",
            to_stage_2(),
            EventKind::StageAdvanced,
            Severity::Info,
        ),
        ("started", start(), EventKind::Started, Severity::Info),
        (
            "rolled back",
            then(start(), vec![(MIN, fail("error-rate"))]),
            EventKind::RolledBack,
            Severity::Critical,
        ),
        (
            "paused for a failing check",
            then(start(), vec![(MIN, fail("latency"))]),
            EventKind::CheckFailed,
            Severity::Warning,
        ),
        (
            "paused by hand",
            then(start(), vec![(MIN, cmd(Command::Pause))]),
            EventKind::Paused,
            Severity::Warning,
        ),
        (
            "overall fail",
            then(start(), vec![(MIN, outcome(O::Fail))]),
            EventKind::Paused,
            Severity::Warning,
        ),
        (
            "inconclusive streak",
            then(start(), repeat(1, 5, outcome(O::Inconclusive))),
            EventKind::InconclusiveStreak,
            Severity::Warning,
        ),
        (
            "notify trigger",
            then(start(), vec![(MIN, failing("cpu", O::Pass))]),
            EventKind::CheckFailed,
            Severity::Warning,
        ),
        (
            "emergency",
            then(start(), vec![(MIN, cmd(Command::EmergencyStop))]),
            EventKind::EmergencyStop,
            Severity::Critical,
        ),
        (
            "succeeded",
            then(
                start(),
                vec![
                    (MIN, cmd(Command::Promote)),
                    (2 * MIN, cmd(Command::Promote)),
                    (3 * MIN, cmd(Command::Promote)),
                ],
            ),
            EventKind::Succeeded,
            Severity::Info,
        ),
        (
            "retry resolves the rollback",
            then(
                start(),
                vec![(MIN, fail("error-rate")), (2 * MIN, cmd(Command::Start))],
            ),
            EventKind::RolledBack,
            Severity::Info,
        ),
    ];
    for (name, events, kind, severity) in cases {
        let (_, actions) = run(&plan(), events);
        assert_eq!(
            notified(&actions, kind),
            Some(severity),
            "{name}: {actions:#?}"
        );
    }
}

#[test]
fn weight_changes_emit_exactly_one_set_weight_and_an_audit() {
    let (_, actions) = run(&plan(), to_stage_2());
    let sets: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::SetWeight { weight, previous } => Some((*previous, *weight)),
            _ => None,
        })
        .collect();
    assert_eq!(sets, vec![(0, 10), (10, 25)]);
    let audited: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Audit {
                action,
                previous_weight,
                new_weight,
                ..
            } if previous_weight != new_weight => Some((*action, *previous_weight, *new_weight)),
            _ => None,
        })
        .collect();
    assert_eq!(
        audited,
        vec![
            (AuditAction::Started, 0, 10),
            (AuditAction::StageAdvanced, 10, 25)
        ]
    );
}

#[test]
fn sustained_failure_rolls_back_exactly_when_the_sustain_is_met() {
    let p = with(|p| p.triggers[0].sustain = Sustain::For(Duration::from_secs(300)));
    let mut events = start();
    events.extend(repeat(1, 5, fail("error-rate")));
    let (state, actions) = run(&p, events);
    assert_eq!(
        state.phase.name(),
        "progressing",
        "4 minutes of failure: hold"
    );
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { weight: 0, .. }))
    );
    assert_eq!(state.failing["error-rate"].count, 5);
    let (next, actions) = step(&state, &p, fail("error-rate"), at(6 * MIN)).unwrap();
    assert_eq!(
        next.phase.name(),
        "rolled back",
        "5 minutes of failure: roll back"
    );
    assert!(actions.contains(&Action::SetWeight {
        weight: 0,
        previous: 10
    }));
}

#[test]
fn dry_run_records_what_would_have_happened_once_per_streak() {
    let p = with(|p| p.triggers[0].dry_run = true);
    let mut events = start();
    events.extend(repeat(1, 4, failing("error-rate", AnalysisOutcome::Pass)));
    let (state, actions) = run(&p, events);
    assert_eq!(state.weight, 10);
    let dry: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Audit {
                action: AuditAction::DryRun,
                reason,
                ..
            } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(dry.len(), 1, "{dry:?}");
    assert!(dry[0].contains("would have rolled back"), "{}", dry[0]);
}

#[test]
fn events_during_an_emergency_are_audited_as_ignored() {
    let (state, _) = run(
        &plan(),
        then(start(), vec![(MIN, cmd(Command::EmergencyStop))]),
    );
    for event in [
        cmd(Command::Resume),
        cmd(Command::Rollback),
        pass(),
        fail("error-rate"),
    ] {
        let (next, actions) = step(&state, &plan(), event.clone(), at(2 * MIN)).unwrap();
        assert_eq!(
            next, state,
            "{event:?} changed an emergency-stopped rollout"
        );
        assert!(
            matches!(
                actions.as_slice(),
                [Action::Audit {
                    action: AuditAction::IgnoredDuringEmergency,
                    ..
                }]
            ),
            "{event:?}: {actions:?}"
        );
    }
    let (next, actions) = step(&state, &plan(), Event::Tick, at(2 * MIN)).unwrap();
    assert_eq!((next, actions), (state, vec![]));
}

#[test]
fn commands_that_make_no_sense_are_refused_without_change() {
    let pending = RolloutState::new();
    let (progressing, _) = run(&plan(), start());
    let (paused, _) = run(&plan(), then(start(), vec![(MIN, cmd(Command::Pause))]));
    let (rolled_back, _) = run(&plan(), then(start(), vec![(MIN, fail("error-rate"))]));
    let (aborted, _) = run(&plan(), then(start(), vec![(MIN, cmd(Command::Abort))]));
    let cases = [
        (&pending, Command::Approve, "pending"),
        (&pending, Command::Resume, "pending"),
        (&pending, Command::Rollback, "pending"),
        (&pending, Command::Pause, "pending"),
        (&pending, Command::ClearEmergency, "pending"),
        (&progressing, Command::Start, "progressing"),
        (&progressing, Command::Approve, "progressing"),
        (&progressing, Command::Resume, "progressing"),
        (&paused, Command::Pause, "paused"),
        (&paused, Command::Promote, "paused"),
        (&paused, Command::Approve, "paused"),
        (&rolled_back, Command::Rollback, "rolled back"),
        (&rolled_back, Command::Abort, "rolled back"),
        (&aborted, Command::Start, "aborted"),
    ];
    for (state, command, phase) in cases {
        let got = step(state, &plan(), cmd(command), at(5 * MIN));
        assert_eq!(
            got,
            Err(StepError::NotAllowed { command, phase }),
            "{command} while {phase}"
        );
    }
    let err = step(&progressing, &plan(), cmd(Command::Approve), at(5 * MIN)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`approve` is not allowed while the rollout is progressing"
    );
}

#[test]
fn only_a_person_clears_an_emergency() {
    let (stopped, _) = run(
        &plan(),
        then(start(), vec![(MIN, cmd(Command::EmergencyStop))]),
    );
    for by in [
        TriggeredBy::Schedule,
        TriggeredBy::Emergency,
        TriggeredBy::AutoRollback,
    ] {
        let got = step(
            &stopped,
            &plan(),
            Event::command(Command::ClearEmergency, by.clone(), "x"),
            at(2 * MIN),
        );
        assert_eq!(got, Err(StepError::NeedsOperator { by }));
    }
}

#[test]
fn bad_plans_give_errors_not_panics() {
    let empty = with(|p| p.stages.clear());
    assert_eq!(
        step(&RolloutState::new(), &empty, cmd(Command::Start), at(0)),
        Err(StepError::EmptyPlan)
    );
    // The rule file lost a stage under a running rollout.
    let (state, _) = run(&plan(), to_stage_2());
    let shorter = with(|p| p.stages.truncate(1));
    assert_eq!(
        step(&state, &shorter, Event::Tick, at(11 * MIN)),
        Err(StepError::StageOutOfRange {
            stage: 1,
            stages: 1
        })
    );
}

#[test]
fn state_round_trips_through_json() {
    let p = with(|p| p.triggers[0].sustain = Sustain::Consecutive(9));
    let mut events = to_stage_2();
    events.push((11 * MIN + 1, fail("error-rate")));
    events.push((12 * MIN, cmd(Command::Pause)));
    let (state, _) = run(&p, events);
    assert!(!state.failing.is_empty());
    let json = serde_json::to_string(&state).unwrap();
    let back: RolloutState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state, "{json}");
}

fn failed(attempted: u8, previous: u8) -> Event {
    Event::ActuationFailed {
        attempted,
        previous,
        error: "webhook answered 500".to_string(),
    }
}

fn audited(actions: &[Action], action: AuditAction) -> Option<(u8, u8, String)> {
    actions.iter().find_map(|a| match a {
        Action::Audit {
            action: got,
            previous_weight,
            new_weight,
            reason,
            ..
        } if *got == action => Some((*previous_weight, *new_weight, reason.clone())),
        _ => None,
    })
}

#[test]
fn a_failed_advance_stays_at_the_applied_weight_paused_until_resumed() {
    let (at_25, _) = run(&plan(), to_stage_2());
    assert_eq!(
        (&at_25.phase, at_25.weight),
        (&Phase::Progressing { stage: 1 }, 25)
    );
    let (paused, actions) = step(&at_25, &plan(), failed(25, 10), at(10 * MIN + 1)).unwrap();
    assert_eq!(paused.weight, 10);
    let Phase::Paused {
        stage,
        resume_to,
        reason,
    } = &paused.phase
    else {
        panic!("not paused: {:?}", paused.phase);
    };
    assert_eq!((*stage, *resume_to), (1, ResumeTo::Progressing));
    assert!(reason.contains("webhook answered 500"), "{reason}");
    assert!(reason.contains("from 10% to 25%"), "{reason}");
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { .. }))
    );
    let (from, to, why) = audited(&actions, AuditAction::ActuationFailed).unwrap();
    assert_eq!((from, to), (25, 10));
    assert!(why.contains("webhook answered 500"), "{why}");
    assert_eq!(
        notified(&actions, EventKind::ActuatorFailed),
        Some(Severity::Critical)
    );
    // Analyses and ticks do not move it; Resume re-applies the stage's weight.
    let (held, _) = step(&paused, &plan(), pass(), at(11 * MIN)).unwrap();
    assert_eq!((&held.phase, held.weight), (&paused.phase, 10));
    let (resumed, actions) = step(&paused, &plan(), cmd(Command::Resume), at(12 * MIN)).unwrap();
    assert_eq!(
        (&resumed.phase, resumed.weight),
        (&Phase::Progressing { stage: 1 }, 25)
    );
    assert!(actions.contains(&Action::SetWeight {
        weight: 25,
        previous: 10
    }));
}

#[test]
fn a_failed_rollback_or_abort_stays_at_the_applied_stage_and_can_be_retried() {
    let (at_25, _) = run(&plan(), to_stage_2());
    for command in [Command::Rollback, Command::Abort] {
        let (down, actions) = step(&at_25, &plan(), cmd(command), at(11 * MIN)).unwrap();
        let target = down.weight;
        assert!(actions.contains(&Action::SetWeight {
            weight: target,
            previous: 25
        }));
        let (kept, _) = step(&down, &plan(), failed(target, 25), at(11 * MIN + 1)).unwrap();
        assert_eq!(kept.weight, 25, "{command}");
        assert!(
            matches!(kept.phase, Phase::Paused { stage: 1, .. }),
            "{command}: {:?}",
            kept.phase
        );
        let (again, actions) = step(&kept, &plan(), cmd(command), at(12 * MIN)).unwrap();
        assert_eq!(again.weight, target);
        assert!(actions.contains(&Action::SetWeight {
            weight: target,
            previous: 25
        }));
    }
}

#[test]
fn a_failed_success_pauses_at_the_last_stage_and_a_failed_rollback_after_it_stays_succeeded() {
    let mut events = to_stage_2();
    events.extend(repeat(11, 3, pass()));
    events.push((20 * MIN, Event::Tick));
    events.extend(repeat(21, 3, pass()));
    events.push((30 * MIN, Event::Tick));
    let (done, _) = run(&plan(), events);
    assert_eq!((&done.phase, done.weight), (&Phase::Succeeded, 100));
    let (kept, _) = step(&done, &plan(), failed(100, 50), at(30 * MIN + 1)).unwrap();
    assert_eq!(kept.weight, 50);
    assert!(
        matches!(kept.phase, Phase::Paused { stage: 2, .. }),
        "{kept:?}"
    );
    // From succeeded, a rollback to 50% that fails leaves it succeeded at 100%.
    let (back, _) = step(&done, &plan(), cmd(Command::Rollback), at(31 * MIN)).unwrap();
    assert_eq!(back.weight, 50);
    let (kept, actions) = step(&back, &plan(), failed(50, 100), at(31 * MIN + 1)).unwrap();
    assert_eq!((&kept.phase, kept.weight), (&Phase::Succeeded, 100));
    assert_eq!(
        notified(&actions, EventKind::ActuatorFailed),
        Some(Severity::Critical)
    );
}

#[test]
fn a_failed_emergency_stop_stays_stopped_at_the_applied_weight_and_a_second_stop_retries() {
    let (at_25, _) = run(&plan(), to_stage_2());
    let stop = Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "kill file");
    let (stopped, _) = step(&at_25, &plan(), stop.clone(), at(11 * MIN)).unwrap();
    let (stuck, actions) = step(&stopped, &plan(), failed(0, 25), at(11 * MIN + 1)).unwrap();
    assert!(matches!(
        stuck.phase,
        Phase::EmergencyStopped { stage: 1, .. }
    ));
    assert_eq!(stuck.weight, 25);
    assert_eq!(
        notified(&actions, EventKind::ActuatorFailed),
        Some(Severity::Critical)
    );
    // Still deaf to everything else...
    let (same, _) = step(&stuck, &plan(), cmd(Command::Resume), at(12 * MIN)).unwrap();
    assert_eq!(same, stuck);
    // ...but a second stop tries the 0% again.
    let (retried, actions) = step(&stuck, &plan(), stop, at(12 * MIN)).unwrap();
    assert_eq!(retried.weight, 0);
    assert!(actions.contains(&Action::SetWeight {
        weight: 0,
        previous: 25
    }));
    // Once the 0% is applied, a further stop changes nothing again.
    let (twice, actions) = step(
        &retried,
        &plan(),
        Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "again"),
        at(13 * MIN),
    )
    .unwrap();
    assert_eq!(twice, retried);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::SetWeight { .. }))
    );
}

#[test]
fn a_stale_actuation_failure_changes_nothing() {
    let (at_25, _) = run(&plan(), to_stage_2());
    assert_eq!(
        step(&at_25, &plan(), failed(10, 0), at(11 * MIN)),
        Err(StepError::StaleActuation {
            attempted: 10,
            weight: 25
        })
    );
}

/// A canary younger than its check's window has too few points in it: that is the evidence still
/// arriving, not a lack of data, so the `no_data` policy waits until the stage is a window old
/// (after its warm-up). The whole-rollout benchmark found the shipped checkout-api rule pausing
/// every freshly deployed canary at its first analysis (`memory-vs-baseline`, `no_data =
/// "pause"`, a 30-minute window). No data at all still pauses at once.
#[test]
fn too_few_points_in_a_stage_younger_than_the_window_hold_instead_of_pausing() {
    let p = with(|p| {
        p.triggers[0].no_data = NoDataPolicy::Pause;
        p.triggers[0].window = Duration::from_secs(30 * 60);
    });
    let thin = || {
        inconclusive(
            "error-rate",
            InconclusiveCause::TooFew,
            AnalysisOutcome::Inconclusive,
        )
    };
    let (s, _) = run(&p, then(start(), vec![(6 * MIN, thin())]));
    assert_eq!(s.phase.name(), "progressing", "{:?}", s.phase);
    let (s, _) = run(&p, then(start(), vec![(31 * MIN, thin())]));
    assert_eq!(s.phase.name(), "paused", "{:?}", s.phase);
    let empty = no_data("error-rate", AnalysisOutcome::Inconclusive);
    let (s, _) = run(&p, then(start(), vec![(6 * MIN, empty)]));
    assert_eq!(s.phase.name(), "paused", "{:?}", s.phase);
    // With the fail policy, the young canary's thin window fires nothing either.
    let failing = with(|p| {
        p.triggers[0].no_data = NoDataPolicy::Fail;
        p.triggers[0].window = Duration::from_secs(30 * 60);
    });
    let (s, _) = run(&failing, then(start(), vec![(6 * MIN, thin())]));
    assert_eq!(s.phase.name(), "progressing", "{:?}", s.phase);
}

/// Issue 19: a staged check whose evidence is still accruing holds the stage without counting
/// towards the inconclusive streak (the anytime bound may be looked at again at every analysis
/// and decides later), where a check *not shown* on a fixed window pauses the rollout after
/// `max_inconclusive` analyses (5 here). An accruing check beside another inconclusive one still
/// counts: only waiting for the stage's own evidence is exempt.
#[test]
fn accruing_stage_evidence_holds_without_pausing_where_not_shown_windows_pause() {
    let p = plan();
    let accruing = || {
        inconclusive(
            "latency",
            InconclusiveCause::Accruing,
            AnalysisOutcome::Inconclusive,
        )
    };
    let (s, _) = run(&p, then(start(), repeat(1, 8, accruing())));
    assert_eq!(s.phase.name(), "progressing", "{:?}", s.phase);
    assert_eq!(s.inconclusive_streak, 0);
    let not_shown = inconclusive(
        "latency",
        InconclusiveCause::NotShown,
        AnalysisOutcome::Inconclusive,
    );
    let (s, _) = run(&p, then(start(), repeat(1, 8, not_shown)));
    assert_eq!(s.phase.name(), "paused", "{:?}", s.phase);
    let mixed = report(
        AnalysisOutcome::Inconclusive,
        vec![
            CheckOutcome::inconclusive("latency", InconclusiveCause::Accruing),
            CheckOutcome::inconclusive("cpu", InconclusiveCause::Untestable),
            CheckOutcome::pass("error-rate"),
        ],
    );
    let (s, _) = run(&p, then(start(), repeat(1, 8, mixed)));
    assert_eq!(s.phase.name(), "paused", "{:?}", s.phase);
    // Once the evidence passes, the stage's passes count as usual and the stage advances.
    let (s, _) = run(
        &p,
        then(
            then(start(), repeat(1, 4, accruing())),
            vec![
                (5 * MIN, pass()),
                (6 * MIN, pass()),
                (7 * MIN, pass()),
                (10 * MIN, Event::Tick),
            ],
        ),
    );
    assert_eq!(s.weight, 25, "{:?}", s.phase);
}

/// A dry-run check records its verdicts and acts on none: while a stage's evidence is accruing,
/// its failure must not turn the wait into an inconclusive streak that pauses the rollout (the
/// whole-rollout benchmark paused a healthy search-api rollout so, through its dry-run p50
/// check), nor be named as what held a stage that timed out.
#[test]
fn a_failing_dry_run_check_does_not_pause_an_accruing_stage() {
    let p = with(|p| {
        p.triggers[1].dry_run = true;
        p.stages[0].max_duration = Some(Duration::from_secs(30 * 60));
    });
    let accruing_beside_dry_run_fail = report(
        AnalysisOutcome::Inconclusive,
        vec![
            CheckOutcome::inconclusive("error-rate", InconclusiveCause::Accruing),
            CheckOutcome::fail("latency"),
            CheckOutcome::pass("cpu"),
        ],
    );
    let (s, _) = run(
        &p,
        then(start(), repeat(1, 8, accruing_beside_dry_run_fail.clone())),
    );
    assert_eq!(s.phase.name(), "progressing", "{:?}", s.phase);
    assert_eq!(s.inconclusive_streak, 0);
    let (s, _) = run(
        &p,
        then(
            then(start(), repeat(1, 3, accruing_beside_dry_run_fail)),
            vec![(30 * MIN, Event::Tick)],
        ),
    );
    let Phase::Paused { reason, .. } = &s.phase else {
        panic!("{:?}", s.phase);
    };
    assert!(
        reason.ends_with("not passing in its last analysis: error-rate"),
        "{reason}"
    );
}

/// A stage that outlives its `max_duration` pauses for a person, who must see what held it:
/// the reason names the checks without a pass in the stage's last analysis (a staged bound
/// still accruing, here), not only "0 of 3 passes". A passing analysis holds nothing, and the
/// names do not outlive the stage.
#[test]
fn a_timed_out_stage_names_the_checks_that_held_it() {
    let p = with(|p| p.stages[0].max_duration = Some(Duration::from_secs(30 * 60)));
    let held = report(
        AnalysisOutcome::Inconclusive,
        vec![
            CheckOutcome::inconclusive("latency", InconclusiveCause::Accruing),
            CheckOutcome::inconclusive("cpu", InconclusiveCause::NotApplicable),
            CheckOutcome::pass("error-rate"),
        ],
    );
    let (s, _) = run(
        &p,
        then(
            then(start(), repeat(1, 3, held.clone())),
            vec![(30 * MIN, Event::Tick)],
        ),
    );
    let Phase::Paused { reason, .. } = &s.phase else {
        panic!("{:?}", s.phase);
    };
    assert!(
        reason.ends_with(
            "0 of 3 required passing analyses; not passing in its last analysis: latency"
        ),
        "{reason}"
    );
    // The last analysis passed: nothing held it but the count of passes.
    let (s, _) = run(
        &p,
        then(
            then(start(), repeat(1, 3, held)),
            vec![(20 * MIN, pass()), (30 * MIN, Event::Tick)],
        ),
    );
    let Phase::Paused { reason, .. } = &s.phase else {
        panic!("{:?}", s.phase);
    };
    assert!(
        reason.ends_with("1 of 3 required passing analyses"),
        "{reason}"
    );
    assert!(s.holding.is_empty());
}

/// Issue 19: `for`/`consecutive` are for blips on absolute thresholds. A check judged on its
/// stage's evidence with bounds valid at every look (`CheckOutcome::settled`) acts on its first
/// failure even under `consecutive = 3` or `for = 5m`; the same failure from a window check
/// still waits for its sustain.
#[test]
fn a_settled_failure_acts_at_once_whatever_the_sustain() {
    let settled_fail = || {
        let checks = CHECKS
            .iter()
            .map(|c| match *c == "error-rate" {
                true => CheckOutcome {
                    settled: true,
                    ..CheckOutcome::fail(*c)
                },
                false => CheckOutcome::pass(*c),
            })
            .collect();
        report(AnalysisOutcome::Fail, checks)
    };
    for sustain in [
        Sustain::Consecutive(3),
        Sustain::For(Duration::from_secs(300)),
    ] {
        let p = with(|p| p.triggers[0].sustain = sustain);
        let (state, actions) = run(&p, then(start(), vec![(MIN, settled_fail())]));
        assert!(
            matches!(state.phase, Phase::RolledBack { .. }),
            "{sustain:?}: {:?}",
            state.phase
        );
        let said = format!("{actions:?}");
        assert!(said.contains("failing on its stage's evidence"), "{said}");
        let (waiting, _) = run(&p, then(start(), vec![(MIN, fail("error-rate"))]));
        assert!(
            matches!(waiting.phase, Phase::Progressing { .. }),
            "{sustain:?}: {:?}",
            waiting.phase
        );
    }
}
