//! When a rollout's task wakes: the tick due at a stage's deadline, and the analyses' schedule
//! (a fixed interval staggered per rollout, or a cron schedule). Pure: the caller passes the
//! time (tokio's instant for timers, the daemon's clock for a cron schedule's next time).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::rollout::{Phase, Plan, RolloutState};
use crate::rules::Schedule;

/// How long from `now` until the machine must be told that time passed: when the current stage's
/// minimum duration is over with its passes in (it advances or waits for approval), or its
/// maximum duration is over without them (it pauses). `None` when no tick can change anything
/// (not progressing, or a stage with neither deadline ahead): analyses and commands step the
/// machine themselves. Pure.
pub fn tick_due(state: &RolloutState, plan: &Plan, now: DateTime<Utc>) -> Option<Duration> {
    let Phase::Progressing { stage } = state.phase else {
        return None;
    };
    let stage = plan.stages.get(stage)?;
    // A stage without a start time gets one from its first tick.
    let Some(started) = state.stage_started_at else {
        return Some(Duration::ZERO);
    };
    let ran = (now - started).to_std().unwrap_or(Duration::ZERO);
    let deadline = if state.passes >= stage.required_passes && !state.held() {
        stage.min_duration
    } else {
        stage.max_duration?
    };
    Some(deadline.saturating_sub(ran))
}

/// A stable offset of `name` within `period` (FNV-1a of the name), so rollouts started together
/// spread their analyses over the period instead of all querying in the same instant, and a
/// rollout keeps its place across restarts.
pub fn stagger(name: &str, period: Duration) -> Duration {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let nanos = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(hash % nanos)
}

/// The wait before a rollout's first analysis: a fixed interval's analyses start at the rollout's
/// stagger offset within it; a cron schedule keeps its exact times.
pub fn first_delay(name: &str, schedule: &Schedule, now: DateTime<Utc>) -> Duration {
    match schedule {
        Schedule::Every(d) => stagger(name, *d),
        Schedule::Cron { .. } => next_delay(schedule, now),
    }
}

/// When the analysis after the one due at `due` is: a fixed interval keeps its cadence (and so
/// the rollout's stagger) from `due`, skipping the slots already missed when an analysis ran
/// late; a cron schedule's next time after `clock` (the same moment as `now`, on the daemon's
/// clock).
pub fn following(due: Instant, schedule: &Schedule, now: Instant, clock: DateTime<Utc>) -> Instant {
    match schedule {
        Schedule::Every(d) if !d.is_zero() => {
            let next = due + *d;
            if next > now {
                return next;
            }
            // Missed slots are skipped, not run back to back.
            let behind = now.duration_since(next).as_nanos();
            let skip = u32::try_from(behind / d.as_nanos() + 1).unwrap_or(u32::MAX);
            next + d.saturating_mul(skip)
        }
        _ => now + next_delay(schedule, clock),
    }
}

/// The wait from `now` until the next analysis.
fn next_delay(schedule: &Schedule, now: DateTime<Utc>) -> Duration {
    match schedule {
        Schedule::Every(d) => *d,
        Schedule::Cron { cron, .. } => cron
            .find_next_occurrence(&now, false)
            .ok()
            .and_then(|next| (next - now).to_std().ok())
            .unwrap_or(Duration::from_secs(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{RollbackTarget, Stage};

    const MIN: Duration = Duration::from_secs(60);

    fn plan(min: Duration, max: Option<Duration>) -> Plan {
        Plan {
            stages: vec![Stage {
                name: "10%".into(),
                weight: 10,
                min_duration: min,
                max_duration: max,
                required_passes: 3,
                approval: false,
            }],
            rollback_to: RollbackTarget::Zero,
            warmup: Duration::ZERO,
            max_inconclusive: 3,
            triggers: Vec::new(),
            start: crate::rollout::StartPolicy::Auto,
        }
    }

    fn progressing(passes: u32, started: DateTime<Utc>) -> RolloutState {
        RolloutState {
            phase: Phase::Progressing { stage: 0 },
            weight: 10,
            stage_started_at: Some(started),
            passes,
            ..RolloutState::new()
        }
    }

    #[test]
    fn staggered_offsets_stay_within_the_interval_are_stable_and_spread() {
        let period = Duration::from_secs(10);
        let offsets: Vec<Duration> = (0..1000)
            .map(|i| stagger(&format!("rollout-{i}"), period))
            .collect();
        assert!(offsets.iter().all(|o| *o < period));
        assert_eq!(stagger("rollout-7", period), offsets[7]);
        // Every tenth of the interval gets some of the 1,000 rollouts, none more than twice its share.
        let mut buckets = [0usize; 10];
        for o in &offsets {
            buckets[(o.as_millis() / 1000) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (30..=200).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn a_fixed_interval_keeps_its_cadence_and_skips_missed_slots() {
        let every = Schedule::Every(Duration::from_secs(10));
        let due = Instant::now();
        assert_eq!(
            following(due, &every, due + Duration::from_secs(1), Utc::now()),
            due + Duration::from_secs(10)
        );
        // An analysis that ran 25 s late: the slots at +10 s and +20 s are gone, not run in a burst.
        assert_eq!(
            following(due, &every, due + Duration::from_secs(25), Utc::now()),
            due + Duration::from_secs(30)
        );
    }

    #[test]
    fn a_cron_schedule_counts_its_next_analysis_from_the_time_it_is_given() {
        use croner::parser::{CronParser, Seconds, Year};
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let hourly = Schedule::Cron {
            expr: "0 * * * *".into(),
            cron: Box::new(parser.parse("0 * * * *").unwrap()),
        };
        let at = |hms: &str| {
            DateTime::parse_from_rfc3339(&format!("2026-03-01T{hms}Z"))
                .unwrap()
                .with_timezone(&Utc)
        };
        // The daemon's clock, not the machine's: a test's clock at 12:15 waits 45 minutes.
        assert_eq!(
            first_delay("r", &hourly, at("12:15:00")),
            Duration::from_secs(45 * 60)
        );
        let due = Instant::now();
        assert_eq!(
            following(due, &hourly, due, at("12:59:30")),
            due + Duration::from_secs(30)
        );
    }

    #[test]
    fn ticks_are_due_only_at_a_stage_deadline() {
        let t0 = Utc::now();
        let at = |d: Duration| t0 + chrono::Duration::from_std(d).unwrap();
        let open_ended = plan(10 * MIN, None);
        // Passes still missing and no maximum: nothing a tick could change.
        assert_eq!(tick_due(&progressing(1, t0), &open_ended, at(MIN)), None);
        // Passes in: due when the minimum duration is over.
        assert_eq!(
            tick_due(&progressing(3, t0), &open_ended, at(MIN)),
            Some(9 * MIN)
        );
        assert_eq!(
            tick_due(&progressing(3, t0), &open_ended, at(20 * MIN)),
            Some(Duration::ZERO)
        );
        // Passes missing with a maximum: due when it runs out.
        let bounded = plan(10 * MIN, Some(30 * MIN));
        assert_eq!(
            tick_due(&progressing(0, t0), &bounded, at(MIN)),
            Some(29 * MIN)
        );
        // A stage with no start time yet gets one at once; other phases never tick.
        let unstarted = RolloutState {
            stage_started_at: None,
            ..progressing(0, t0)
        };
        assert_eq!(tick_due(&unstarted, &bounded, t0), Some(Duration::ZERO));
        assert_eq!(tick_due(&RolloutState::new(), &bounded, t0), None);
    }
}
