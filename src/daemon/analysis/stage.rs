//! Which evidence an analysis reads (issue 19 point 1): a check's fixed window, or for a staged
//! check (`judge::staged_supports`) every point since its stage's warm-up ended, judged with
//! the anytime-valid bounds at the stage's share of the check's significance. It owns the span
//! each check is queried over, the stage's share of α, and the staged spec the judge is given;
//! it asks nothing and decides nothing itself.
//!
//! **The span.** A staged check is queried from the end of its stage's warm-up to now: points from
//! an earlier stage or weight never count for this one, so the rule's `window` is not a
//! look-back for it (a look-back reaching over the stage's start would earn passes at 25% on data
//! from 10%, the bug of issue 19). The window still says how long the machine waits before a
//! thin check is a lack of data, and the judge needs at least `stats::MIN_POINTS` points. A stage
//! longer than [`MAX_POINTS`] steps reads only its last [`MAX_POINTS`] steps (Prometheus answers
//! at most 11,000 points per series): the bound then is that of the latest part of the stage,
//! still valid at every look because it is a function of the points it reads; summaries kept
//! across analyses, asking only for what is new, are the next step.

use chrono::{DateTime, Utc};

use crate::judge::{self, CheckSpec, Direction};
use crate::rules::CheckRule as Check;
use crate::stats::split_alpha;

/// The most points a staged check's query asks for per series: Prometheus's limit.
pub const MAX_POINTS: u32 = 11_000;

/// Whose evidence an analysis judges.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EvidenceSpan {
    /// Every check over its own window ending now: today's fixed-window judge.
    Window,
    /// Staged checks over their stage since `from` (the stage's start plus warm-up) at the share
    /// `share` of their significance (the stage's part of an α split over the plan's stages);
    /// other checks over their windows.
    Stage { from: DateTime<Utc>, share: f64 },
}

impl EvidenceSpan {
    /// The span of stage `stage` of `stages` (equal shares: docs/sequential.md argues for them),
    /// started at `started` with `warmup`. `None` when the plan has no such stage.
    pub fn of_stage(
        stage: usize,
        stages: usize,
        started: DateTime<Utc>,
        warmup: std::time::Duration,
    ) -> Option<EvidenceSpan> {
        let shares = split_alpha(0.5, &vec![1.0; stages]).ok()?;
        let share = shares.get(stage)? / 0.5;
        let from = started + chrono::Duration::from_std(warmup).ok()?;
        Some(EvidenceSpan::Stage { from, share })
    }

    /// Whether `check` is judged on its stage's evidence under this span.
    pub fn stages(&self, check: &Check) -> bool {
        matches!(self, EvidenceSpan::Stage { .. }) && judge::staged_supports(&check.spec)
    }

    /// Where `check`'s queries start for an analysis at `now`.
    pub fn start(&self, check: &Check, now: DateTime<Utc>) -> DateTime<Utc> {
        let window = now - chrono::Duration::from_std(check.window).unwrap_or_default();
        match *self {
            EvidenceSpan::Stage { from, .. } if self.stages(check) => {
                let step = chrono::Duration::from_std(check.step).unwrap_or_default();
                let earliest = now - step * (MAX_POINTS as i32 - 1);
                from.max(earliest).min(now)
            }
            _ => window,
        }
    }

    /// The spec `check` is judged with: for a staged check, its confidence lowered so that its
    /// significance is the stage's share of the rule's (staged checks are directional, whose
    /// significance is half of 1 − confidence).
    pub fn spec(&self, check: &Check) -> CheckSpec {
        let mut spec = check.spec.clone();
        if let EvidenceSpan::Stage { share, .. } = *self
            && self.stages(check)
            && spec.direction != Direction::Either
        {
            spec.confidence = 1.0 - (1.0 - spec.confidence) * share;
        }
        spec
    }
}
