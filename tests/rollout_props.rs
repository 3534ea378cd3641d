//! Properties of the rollout state machine over random plans and random event sequences: the
//! promises an operator relies on whatever happens (weights, evidence, emergency stop, rollback,
//! pause, storage).

use canaryd::rollout::{
    Action, AnalysisOutcome, AnalysisReport, CheckOutcome, Command, Event, NoDataPolicy, Phase,
    Plan, RollbackTarget, RolloutState, Stage, Sustain, Trigger, TriggerAction, TriggeredBy,
    VerdictClass, step,
};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use std::time::Duration;

const CHECKS: [&str; 3] = ["errors", "latency", "cpu"];

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
            check: check.to_string(),
            action,
            sustain,
            no_data,
            dry_run,
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
            },
        )
}

fn report_strategy() -> impl Strategy<Value = AnalysisReport> {
    let check = |name: &'static str| {
        prop_oneof![
            4 => Just(CheckOutcome::new(name, VerdictClass::Pass)),
            1 => Just(CheckOutcome::new(name, VerdictClass::Fail)),
            1 => Just(CheckOutcome::new(name, VerdictClass::Inconclusive)),
            1 => Just(CheckOutcome::no_data(name)),
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
    ]
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
                && !r
                    .checks
                    .iter()
                    .any(|c| c.no_data && c.class == VerdictClass::Inconclusive)
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

        for (gap, event) in events {
            now += chrono::Duration::seconds(gap);
            let prev = state.clone();
            let result = step(&prev, &plan, event.clone(), now);
            let (next, actions) = match result {
                Ok(ok) => ok,
                Err(_) => {
                    // Refusals are only for commands, and change nothing.
                    prop_assert!(matches!(event, Event::Command { .. }), "{event:?} refused");
                    continue;
                }
            };

            // The weight is always a stage weight or 0; 100 only once succeeded.
            prop_assert!(
                next.weight == 0
                    || stage_weights.contains(&next.weight)
                    || (next.weight == 100 && next.phase == Phase::Succeeded),
                "weight {} not in {:?} ({:?})", next.weight, stage_weights, next.phase
            );

            // Exactly one SetWeight per weight change, none otherwise; an audit for every change.
            let sets: Vec<(u8, u8)> = actions.iter().filter_map(|a| match a {
                Action::SetWeight { weight, previous } => Some((*previous, *weight)),
                _ => None,
            }).collect();
            if next.weight != prev.weight {
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

            // Emergency stop beats every event until a person clears it.
            if let Event::Command { command: Command::EmergencyStop, .. } = event {
                prop_assert!(matches!(next.phase, Phase::EmergencyStopped { .. }), "{:?}", next.phase);
                prop_assert_eq!(next.weight, 0);
            }
            if matches!(prev.phase, Phase::EmergencyStopped { .. }) && !is_clear_by_person(&event) {
                prop_assert_eq!(&next, &prev, "{:?} changed an emergency-stopped rollout", event);
            }
            if matches!(prev.phase, Phase::EmergencyStopped { .. }) && is_clear_by_person(&event) {
                prop_assert!(matches!(next.phase, Phase::Paused { .. }), "{:?}", next.phase);
                prop_assert_eq!(next.weight, 0);
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
        prop_assert_eq!(stopped.weight, 0);
        prop_assert!(
            state.weight == 0
                || actions.contains(&Action::SetWeight { weight: 0, previous: state.weight }),
            "{:?}", actions
        );
        for (gap, event) in after.into_iter().filter(|(_, e)| !is_clear_by_person(e)) {
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
