//! Properties of the rollout state machine over random plans and random event sequences: the
//! promises an operator relies on whatever happens (weights, evidence, emergency stop, rollback,
//! pause, failed actuation, storage).

use canaryd::judge::InconclusiveCause;
use canaryd::rollout::{
    Action, AnalysisOutcome, AnalysisReport, CheckOutcome, CheckVerdict, Command, Event,
    NoDataPolicy, Phase, Plan, RollbackTarget, RolloutState, Stage, Sustain, Trigger,
    TriggerAction, TriggeredBy, step,
};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use std::time::Duration;

const CHECKS: [&str; 3] = ["errors", "latency", "cpu"];

/// Every cause of an inconclusive check; only `NoData` and `TooFew` are a lack of data.
const CAUSES: [InconclusiveCause; 10] = [
    InconclusiveCause::NoData,
    InconclusiveCause::TooFew,
    InconclusiveCause::NonFinite,
    InconclusiveCause::TooMany,
    InconclusiveCause::NotApplicable,
    InconclusiveCause::Setting,
    InconclusiveCause::SeveralSeries,
    InconclusiveCause::NotShown,
    InconclusiveCause::Accruing,
    InconclusiveCause::Untestable,
];

fn mins(max: u64) -> impl Strategy<Value = Duration> {
    (0..=max * 60).prop_map(Duration::from_secs)
}

fn stage_strategy() -> impl Strategy<Value = Stage> {
    (
        1u8..=100,
        mins(20),
        prop::option::of((5u64..=60).prop_map(|m| Duration::from_secs(m * 60))),
        0u32..=4,
        prop::bool::weighted(0.25),
    )
        .prop_map(
            |(weight, min_duration, max_duration, required_passes, approval)| Stage {
                name: format!("w{weight}"),
                weight,
                min_duration,
                max_duration,
                required_passes,
                approval,
            },
        )
}

fn trigger_strategy() -> impl Strategy<Value = Trigger> {
    (
        prop::sample::select(CHECKS.to_vec()),
        prop::sample::select(vec![
            TriggerAction::Rollback,
            TriggerAction::Pause,
            TriggerAction::Notify,
        ]),
        prop_oneof![
            Just(Sustain::Immediately),
            mins(10).prop_map(Sustain::For),
            (1u32..=4).prop_map(Sustain::Consecutive),
        ],
        prop::sample::select(vec![
            NoDataPolicy::Inconclusive,
            NoDataPolicy::Pause,
            NoDataPolicy::Fail,
        ]),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(check, action, sustain, no_data, dry_run)| Trigger {
            check: check.into(),
            action,
            sustain,
            no_data,
            dry_run,
            window: std::time::Duration::ZERO,
        })
}

fn plan_strategy() -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(stage_strategy(), 1..=4),
        prop::sample::select(vec![RollbackTarget::PreviousStage, RollbackTarget::Zero]),
        mins(5),
        0u32..=6,
        prop::collection::vec(trigger_strategy(), 0..=4),
    )
        .prop_map(
            |(stages, rollback_to, warmup, max_inconclusive, triggers)| Plan {
                stages,
                rollback_to,
                warmup,
                max_inconclusive,
                triggers,
                start: canaryd::rollout::StartPolicy::Auto,
            },
        )
}

fn report_strategy() -> impl Strategy<Value = AnalysisReport> {
    let check = |name: &'static str| {
        prop_oneof![
            4 => Just(CheckOutcome::pass(name)),
            1 => Just(CheckOutcome::fail(name)),
            2 => proptest::sample::select(CAUSES.to_vec())
                .prop_map(move |cause| CheckOutcome::inconclusive(name, cause)),
        ]
    };
    (
        prop_oneof![
            4 => Just(AnalysisOutcome::Pass),
            1 => Just(AnalysisOutcome::Marginal),
            1 => Just(AnalysisOutcome::Fail),
            1 => Just(AnalysisOutcome::Inconclusive),
        ],
        check(CHECKS[0]),
        check(CHECKS[1]),
        check(CHECKS[2]),
        0usize..=3,
    )
        .prop_map(|(overall, a, b, c, keep)| AnalysisReport {
            // Sometimes fewer checks (even none) report.
            checks: [a, b, c].into_iter().take(keep).collect(),
            overall,
        })
}

fn event_strategy() -> impl Strategy<Value = Event> {
    let command = prop::sample::select(vec![
        Command::Start,
        Command::Approve,
        Command::Pause,
        Command::Resume,
        Command::Promote,
        Command::Rollback,
        Command::Abort,
        Command::EmergencyStop,
        Command::ClearEmergency,
    ]);
    let by = prop_oneof![
        4 => Just(TriggeredBy::Operator("ana".to_string())),
        1 => Just(TriggeredBy::Schedule),
        1 => Just(TriggeredBy::Emergency),
        1 => Just(TriggeredBy::AutoRollback),
    ];
    prop_oneof![
        4 => Just(Event::Tick),
        8 => report_strategy().prop_map(Event::Analysis),
        3 => (command, by).prop_map(|(c, by)| Event::command(c, by, "prop")),
        // A placeholder: the test fills in the last weight change it saw, as the runner does.
        1 => Just(Event::ActuationFailed { attempted: 0, previous: 0, error: "prop".to_string() }),
    ]
}

/// The actuator failed to apply the last `SetWeight` of `actions` (from the previous step).
fn failure_of(last_set: Option<(u8, u8)>) -> Option<Event> {
    last_set.map(|(previous, attempted)| Event::ActuationFailed {
        attempted,
        previous,
        error: "webhook answered 500".to_string(),
    })
}

/// Events with the seconds elapsed since the previous one.
fn timeline() -> impl Strategy<Value = Vec<(i64, Event)>> {
    prop::collection::vec((0i64..=300, event_strategy()), 1..80)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn is_clear_by_person(event: &Event) -> bool {
    matches!(
        event,
        Event::Command {
            command: Command::ClearEmergency,
            by: TriggeredBy::Operator(_),
            ..
        }
    )
}

/// A pass that counts as evidence: overall Pass with data for every check.
fn is_evidence(event: &Event) -> bool {
    match event {
        Event::Analysis(r) => {
            r.overall == AnalysisOutcome::Pass
                && !r.checks.is_empty()
                && !r.checks.iter().any(|c| {
                    matches!(
                        c.verdict,
                        CheckVerdict::Inconclusive {
                            cause: InconclusiveCause::NoData | InconclusiveCause::TooFew
                        }
                    )
                })
        }
        _ => false,
    }
}

/// Progress through the plan: stage index, with a finished rollout past the last one.
fn progress(phase: &Phase, stages: usize) -> Option<(usize, bool)> {
    match phase {
        Phase::Progressing { stage } => Some((*stage, false)),
        Phase::WaitingApproval { stage } => Some((*stage, true)),
        Phase::Succeeded => Some((stages, false)),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rollout_invariants_hold_over_random_plans_and_events(
        plan in plan_strategy(),
        events in timeline(),
    ) {
        let stage_weights: Vec<u8> = plan.stages.iter().map(|s| s.weight).collect();
        let mut state = RolloutState::new();
        let mut now = t0();
        // Our own count of evidence since the phase last changed.
        let mut entered = now;
        let mut evidence = 0u32;
        // The weight change the previous step asked for, as (previous, new).
        let mut last_set: Option<(u8, u8)> = None;

        for (gap, event) in events {
            now += chrono::Duration::seconds(gap);
            let event = match event {
                Event::ActuationFailed { .. } => match failure_of(last_set) {
                    Some(failed) => failed,
                    None => continue,
                },
                other => other,
            };
            let prev = state.clone();
            let result = step(&prev, &plan, event.clone(), now);
            let (next, actions) = match result {
                Ok(ok) => ok,
                Err(_) => {
                    // Refusals are only for commands, and change nothing.
                    prop_assert!(matches!(event, Event::Command { .. }), "{event:?} refused");
                    last_set = None;
                    continue;
                }
            };

            // The weight is always a stage weight, 0 or 100, and the machine asks for 100 only
            // to succeed. (An actuator that could not apply a change away from 100% leaves the
            // rollout recorded at the 100% still applied.)
            prop_assert!(
                next.weight == 0 || next.weight == 100 || stage_weights.contains(&next.weight),
                "weight {} not in {:?} ({:?})", next.weight, stage_weights, next.phase
            );
            if actions.iter().any(|a| matches!(a, Action::SetWeight { weight: 100, .. }))
                && !stage_weights.contains(&100)
            {
                prop_assert_eq!(&next.phase, &Phase::Succeeded);
            }

            // A change the actuator could not apply: the applied weight is put back, nothing
            // more is asked of the actuator, the rollout no longer progresses, a person is told.
            if let Event::ActuationFailed { previous, .. } = event {
                prop_assert_eq!(next.weight, previous);
                prop_assert!(
                    matches!(
                        next.phase,
                        Phase::Paused { .. } | Phase::EmergencyStopped { .. } | Phase::Succeeded
                    ),
                    "{:?} after a failed actuation", next.phase
                );
                prop_assert!(
                    actions.iter().any(|a| matches!(
                        a,
                        Action::Notify { event: canaryd::rollout::EventKind::ActuatorFailed, .. }
                    )),
                    "no alert: {:?}", actions
                );
            }

            // Exactly one SetWeight per weight change, none otherwise (a failed actuation puts
            // back the weight still applied: nothing to ask); an audit for every change.
            let sets: Vec<(u8, u8)> = actions.iter().filter_map(|a| match a {
                Action::SetWeight { weight, previous } => Some((*previous, *weight)),
                _ => None,
            }).collect();
            if matches!(event, Event::ActuationFailed { .. }) {
                prop_assert!(sets.is_empty(), "SetWeight after a failed actuation: {:?}", actions);
            } else if next.weight != prev.weight {
                prop_assert_eq!(sets, vec![(prev.weight, next.weight)]);
            } else {
                prop_assert!(sets.is_empty(), "SetWeight without a change: {:?}", actions);
            }
            if next.weight != prev.weight || next.phase != prev.phase {
                prop_assert!(
                    actions.iter().any(|a| matches!(a, Action::Audit { .. })),
                    "transition {:?} -> {:?} without audit", prev.phase, next.phase
                );
            }

            // Emergency stop beats every event until a person clears it; a finished run (which
            // it leaves as it is) is not resurrected by it.
            if let Event::Command { command: Command::EmergencyStop, .. } = event {
                if prev.finished() {
                    prop_assert_eq!((&next.phase, next.weight), (&prev.phase, prev.weight));
                } else {
                    prop_assert!(matches!(next.phase, Phase::EmergencyStopped { .. }), "{:?}", next.phase);
                    prop_assert_eq!(next.weight, 0);
                }
            }
            // (Unless its 0% could not be applied: then only the stop's retry moves the weight.)
            let failed = matches!(event, Event::ActuationFailed { .. });
            let retry = matches!(event, Event::Command { command: Command::EmergencyStop, .. });
            if matches!(prev.phase, Phase::EmergencyStopped { .. })
                && !is_clear_by_person(&event)
                && !failed
                && (!retry || prev.weight == 0)
            {
                prop_assert_eq!(&next, &prev, "{:?} changed an emergency-stopped rollout", event);
            }
            if matches!(prev.phase, Phase::EmergencyStopped { .. }) && !is_clear_by_person(&event) {
                prop_assert!(matches!(next.phase, Phase::EmergencyStopped { .. }), "{:?}", next.phase);
            }
            if matches!(prev.phase, Phase::EmergencyStopped { .. }) && is_clear_by_person(&event) {
                prop_assert!(matches!(next.phase, Phase::Paused { .. }), "{:?}", next.phase);
                // 0%, unless the stop's 0% was never applied: clearing changes no weight.
                prop_assert_eq!(next.weight, prev.weight);
            }

            // Rollback never raises the weight.
            if matches!(next.phase, Phase::RolledBack { .. })
                && !matches!(prev.phase, Phase::RolledBack { .. })
            {
                prop_assert!(next.weight <= prev.weight, "rollback {} -> {}", prev.weight, next.weight);
            }

            // A paused rollout's weight never changes by schedule.
            let scheduled = matches!(event, Event::Tick | Event::Analysis(_));
            if matches!(prev.phase, Phase::Paused { .. }) && scheduled {
                prop_assert_eq!(&next, &prev, "{:?} changed a paused rollout", event);
            }

            // No stage advance without passing evidence: count the required passes ourselves.
            if let Event::Analysis(_) = event
                && matches!(prev.phase, Phase::Progressing { .. } | Phase::WaitingApproval { .. })
                && now - entered >= chrono::Duration::from_std(plan.warmup).unwrap()
            {
                evidence = if is_evidence(&event) { evidence + 1 } else { 0 };
            }
            if scheduled
                && let (Some((from, _)), Some((to, waiting))) =
                    (progress(&prev.phase, plan.stages.len()), progress(&next.phase, plan.stages.len()))
                && (to > from || (to == from && waiting && matches!(prev.phase, Phase::Progressing { .. })))
            {
                let stage = &plan.stages[from];
                prop_assert!(
                    evidence >= stage.required_passes,
                    "left stage {} with {} of {} passes", from, evidence, stage.required_passes
                );
                prop_assert!(
                    now - entered >= chrono::Duration::from_std(stage.min_duration).unwrap(),
                    "left stage {} after {} (min {:?})", from, now - entered, stage.min_duration
                );
                prop_assert!(to == from || to == from + 1, "skipped a stage: {} -> {}", from, to);
            }
            if next.phase != prev.phase {
                entered = now;
                evidence = 0;
            }

            // The state survives storage as JSON.
            let json = serde_json::to_string(&next).unwrap();
            let back: RolloutState = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &next);

            last_set = actions.iter().find_map(|a| match a {
                Action::SetWeight { weight, previous } => Some((*previous, *weight)),
                _ => None,
            });
            state = next;
        }
    }

    #[test]
    fn emergency_stop_holds_against_any_event_sequence(
        plan in plan_strategy(),
        before in timeline(),
        after in timeline(),
    ) {
        let mut state = RolloutState::new();
        let mut now = t0();
        for (gap, event) in before {
            now += chrono::Duration::seconds(gap);
            if let Ok((next, _)) = step(&state, &plan, event, now) {
                state = next;
            }
        }
        let stop = Event::command(Command::EmergencyStop, TriggeredBy::Emergency, "kill switch");
        let (stopped, actions) = step(&state, &plan, stop, now).unwrap();
        if state.finished() {
            // Left as it is: no weight change, the same phase. (A new run of it during the
            // stop is begun stopped, at 0%: `Event::NewRun { emergency: true }`.)
            prop_assert_eq!((&stopped.phase, stopped.weight), (&state.phase, state.weight));
            let moved = actions.iter().any(|a| matches!(a, Action::SetWeight { .. }));
            prop_assert!(!moved, "{:?}", actions);
            return Ok(());
        }
        prop_assert_eq!(stopped.weight, 0);
        prop_assert!(
            state.weight == 0
                || actions.contains(&Action::SetWeight { weight: 0, previous: state.weight }),
            "{:?}", actions
        );
        // (An actuator failing to apply the stop is another matter: see the first property.)
        let events = after
            .into_iter()
            .filter(|(_, e)| !is_clear_by_person(e) && !matches!(e, Event::ActuationFailed { .. }));
        for (gap, event) in events {
            now += chrono::Duration::seconds(gap);
            match step(&stopped, &plan, event.clone(), now) {
                Ok((next, actions)) => {
                    prop_assert_eq!(&next, &stopped);
                    prop_assert!(
                        !actions.iter().any(|a| matches!(a, Action::SetWeight { .. })),
                        "{:?}", actions
                    );
                }
                Err(e) => prop_assert!(
                    matches!(event, Event::Command { command: Command::ClearEmergency, .. }),
                    "{:?} refused: {}", event, e
                ),
            }
        }
    }
}
