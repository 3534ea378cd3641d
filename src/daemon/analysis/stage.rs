//! Which evidence an analysis reads (issue 19 point 1): a check's fixed window, or for a staged
//! check (`judge::staged_supports`) every point since its stage's warm-up ended, judged with
//! the anytime-valid bounds at half the stage's share of the check's significance (an error
//! rate's window scan spends the other half over the stage's looks: docs/sequential.md). It
//! owns the span each check is queried over, the stage's share of α, the staged and scan specs
//! the judge is given; it asks nothing and decides nothing itself.
//!
//! **The span.** A staged check is queried from the end of its stage's warm-up to now: points from
//! an earlier stage or weight never count for this one, so the rule's `window` is not a
//! look-back for it (a look-back reaching over the stage's start would earn passes at 25% on data
//! from 10%, the bug of issue 19). The window is what the scan reads (the stage's latest points)
//! and how long the machine waits before a thin check is a lack of data; the stage's bound needs
//! at least `stats::MIN_POINTS` points. A stage longer than [`MAX_POINTS`] steps reads only its
//! last [`MAX_POINTS`] steps (Prometheus answers at most 11,000 points per series): the bound
//! then is that of the latest part of the stage,
//! still valid at every look because it is a function of the points it reads. Each analysis asks
//! the backend only for what is new since the previous one (`kept`). A staged check also reads
//! the [`LOOKBACK`] steps before its stage's evidence starts (the warm-up's, the previous
//! stage's): they never count for the stage's mean, only for how dependent its points are,
//! which lets its bound decide from `stats::MIN_POINTS_WITH_PRIOR` points ([`split`]).

use chrono::{DateTime, Utc};

use crate::judge::{
    self, BaselineTraffic, CheckResult, CheckSpec, Direction, InconclusiveCause, SideData, Verdict,
};
use crate::rollout::RolloutState;
use crate::rules::{CheckRule as Check, RolloutRule};
use crate::stats::{MIN_POINTS, split_alpha};

/// The most points a staged check's query asks for per series: Prometheus's limit.
pub const MAX_POINTS: u32 = 11_000;

/// Steps a staged check reads before its stage's evidence starts, for the dependence of its
/// points only (`stats::SequentialMean::with_prior`).
pub const LOOKBACK: u32 = MIN_POINTS as u32;

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

    /// The span of `state`'s current stage under `rule`: from the stage's start (`now` when the
    /// machine has not recorded one yet, as its first analysis of the stage will) plus the
    /// warm-up. The daemon's analyses and `canaryd replay` both ask this.
    pub fn of_rollout(rule: &RolloutRule, state: &RolloutState, now: DateTime<Utc>) -> Self {
        let stage = state.phase.stage().unwrap_or(0);
        let started = state.stage_started_at.unwrap_or(now);
        EvidenceSpan::of_stage(stage, rule.plan.stages.len(), started, rule.plan.warmup)
            .unwrap_or(EvidenceSpan::Window)
    }

    /// Whether `check` is judged on its stage's evidence under this span.
    pub fn stages(&self, check: &Check) -> bool {
        matches!(self, EvidenceSpan::Stage { .. }) && judge::staged_supports(&check.spec)
    }

    /// Where `check`'s queries start for an analysis at `now`. A window is half-open,
    /// `(now − window, now]`: a `2m` window at a `30s` step reads 4 points, so consecutive
    /// analyses `window` apart read disjoint points and one spike on a boundary is not counted
    /// twice towards `for` or `consecutive`. Under a stage's span a staged check reads all of
    /// its stage since the warm-up (at most [`MAX_POINTS`] steps) and nothing before it but its
    /// [`LOOKBACK`] steps, which only [`split`](Self::split) sees; the other
    /// checks read their windows as an alerting rule would (an absolute threshold on the
    /// canary's last minutes does not depend on the stage it was reached in).
    pub fn start(&self, check: &Check, now: DateTime<Utc>) -> DateTime<Utc> {
        let step = chrono::Duration::from_std(check.step).unwrap_or_default();
        let window = chrono::Duration::from_std(check.window).unwrap_or_default();
        let window_start = (now - window + step).min(now);
        match *self {
            EvidenceSpan::Stage { from, .. } if self.stages(check) => {
                // A long stage's latest steps, on the stage's grid: the instants its earlier
                // analyses read (and `kept` resumes on), from its lookback before the stage, on
                // the same grid.
                let first = from - step * LOOKBACK as i32;
                let earliest = now - step * (MAX_POINTS as i32 - 1);
                let step_ms = step.num_milliseconds().max(1);
                let behind = (earliest - first).num_milliseconds().max(0);
                let skipped = (behind + step_ms - 1) / step_ms;
                (first + chrono::Duration::milliseconds(skipped * step_ms)).min(now)
            }
            _ => window_start,
        }
    }

    /// Where `check`'s judged points start (unix seconds): its stage's evidence start for a
    /// staged check, which reads a lookback before it; everything read otherwise.
    pub fn judged_from(&self, check: &Check) -> f64 {
        match *self {
            EvidenceSpan::Stage { from, .. } if self.stages(check) => {
                from.timestamp_millis() as f64 / 1000.0
            }
            _ => f64::NEG_INFINITY,
        }
    }

    /// `check`'s two sides as read, split at its stage's evidence start: the stage's points,
    /// and for a staged check the points before them (`None` otherwise). Only the stage's
    /// points are judged, charted and scanned.
    pub fn split(
        &self,
        check: &Check,
        sides: [SideData; 2],
    ) -> ([SideData; 2], Option<[SideData; 2]>) {
        if !self.stages(check) {
            return (sides, None);
        }
        let at = self.judged_from(check);
        let cut = |data: SideData| match data {
            SideData::Values(points) => {
                let (before, since): (Vec<_>, Vec<_>) = points.into_iter().partition(|p| p.t < at);
                (SideData::Values(since), SideData::Values(before))
            }
            SideData::Counts(points) => {
                let (before, since): (Vec<_>, Vec<_>) = points.into_iter().partition(|p| p.t < at);
                (SideData::Counts(since), SideData::Counts(before))
            }
        };
        let [b, c] = sides;
        let (b, b_before) = cut(b);
        let (c, c_before) = cut(c);
        ([b, c], Some([b_before, c_before]))
    }

    /// Whether staged `check` also has a window scan ([`EvidenceSpan::scan`]): error-rate checks
    /// only. On latency-like series with strong correlation and heavy tails the fixed-window
    /// judge is not calibrated this far out in its tail (the whole-rollout benchmark paused 3 in
    /// 100 healthy checkout-api rollouts at ρ 0.8 through a relative check's scan, none without
    /// it); error counts have a binomial floor under their dispersion.
    pub fn scans(&self, check: &Check) -> bool {
        self.stages(check)
            && check.spec.direction != Direction::Either
            && matches!(check.spec.kind, judge::CheckKind::ErrorRate { .. })
    }

    /// The spec `check` is judged with: for a staged check, its confidence lowered so that its
    /// significance is half the stage's share of the rule's (staged checks are directional,
    /// whose significance is half of 1 − confidence). The other half is the window scan's for
    /// an error rate ([`EvidenceSpan::scans`]) and unspent for a relative check: one level for
    /// every staged check keeps Holm's correction over them exact.
    pub fn spec(&self, check: &Check) -> CheckSpec {
        let mut spec = check.spec.clone();
        if let EvidenceSpan::Stage { share, .. } = *self
            && self.stages(check)
            && spec.direction != Direction::Either
        {
            spec.confidence = 1.0 - (1.0 - spec.confidence) * share / 2.0;
        }
        spec
    }

    /// The one-sided significance at which staged `check` passes: its own (staged checks are
    /// directional), not the stage's share. A rollout is promoted only if every stage passes, so
    /// the chance of passing a stage where the canary is worse than the tolerance (at most this,
    /// by the bound's coverage) bounds the chance of promoting it: the pass needs no split over
    /// the stages, unlike the failure, which any stage can take (docs/sequential.md).
    pub fn pass_level(&self, check: &Check) -> f64 {
        (1.0 - check.spec.confidence) / 2.0
    }

    /// The window scan of staged `check` at `now`, one of `staged` scanned checks: the fixed-window
    /// judge (issue 18's, calibrated per look) on the stage's points in the check's window, at a
    /// significance spent over the stage's looks. Look `k` is counted in the check's steps since
    /// the warm-up (a look between two new points sees the same data as the one before it and
    /// adds no chance of a false alarm) and gets `a (w + 1) / ((k + w) (k + w + 1))` of the
    /// scan's half `a` of the stage's share, `w` the window's steps, split evenly over the staged
    /// checks (Bonferroni), so the sum over every look of the stage stays within `a`. It catches
    /// what the stage's mean is slow to show: a gross regression before the stage has
    /// [`crate::stats::MIN_POINTS`] points, and one that starts in the middle of a long stage.
    /// `None` outside a stage's span and for checks that do not scan.
    pub fn scan(&self, check: &Check, now: DateTime<Utc>, staged: usize) -> Option<Scan> {
        let EvidenceSpan::Stage { from, share } = *self else {
            return None;
        };
        if !self.scans(check) {
            return None;
        }
        let step = check.step.as_secs_f64().max(1e-3);
        let elapsed = (now - from).as_seconds_f64().max(0.0);
        let look = (elapsed / step).floor() as u64 + 1;
        let stage_alpha = (1.0 - check.spec.confidence) / 2.0 * share;
        // Spent as `a·(w+1)/((k+w)(k+w+1))` with `w` the window's steps: the sum over every
        // look is `a`, flat over the first window (a look with a few points gets no more than a
        // look with a full window) and decaying like 1/k² after it.
        let w = (check.window.as_secs_f64() / step).round().max(1.0);
        let k = look as f64;
        let alpha =
            stage_alpha / 2.0 * (w + 1.0) / ((k + w) * (k + w + 1.0)) / staged.max(1) as f64;
        let mut spec = check.spec.clone();
        spec.confidence = 1.0 - 2.0 * alpha;
        let window = check.window.as_secs_f64();
        let since = (now.timestamp_millis() as f64 / 1000.0 - window).max(from.timestamp() as f64);
        Some(Scan {
            spec,
            since,
            look,
            alpha,
        })
    }

    /// After the family-wise correction, for the staged checks of `rule` (`results` and `sides`
    /// in its checks' order, `None` where the answers were refused): Holm's "not shown" is the
    /// stage's evidence still accruing (the next analysis may show it), and an error rate whose
    /// stage's bound has not failed it is failed by its window scan when the window's points
    /// show the worsening at the look's spent significance (the evidence's notes say so).
    pub fn settle(
        &self,
        rule: &RolloutRule,
        now: DateTime<Utc>,
        sides: &[Option<(&SideData, &SideData)>],
        results: &mut [CheckResult],
        traffic: BaselineTraffic,
    ) {
        let scanned = rule.checks.iter().filter(|c| self.scans(c)).count();
        for ((result, check), read) in results.iter_mut().zip(&rule.checks).zip(sides) {
            if !self.stages(check) {
                continue;
            }
            if let Verdict::Inconclusive { cause, .. } = &mut result.verdict
                && *cause == InconclusiveCause::NotShown
            {
                *cause = InconclusiveCause::Accruing;
            }
            let (Some(scan), Some((baseline, canary))) = (self.scan(check, now, scanned), read)
            else {
                continue;
            };
            if result.verdict == Verdict::Fail {
                continue;
            }
            let (b, c) = (scan.recent(baseline), scan.recent(canary));
            let mut found = judge::judge_check_with(&scan.spec, &b, &c, traffic);
            if found.verdict == Verdict::Fail {
                found.evidence.notes.push(scan.note());
                *result = found;
            }
        }
    }
}

/// A staged check's window scan at one look (see [`EvidenceSpan::scan`]).
#[derive(Debug, Clone)]
pub struct Scan {
    /// The check's spec at the look's significance.
    pub spec: CheckSpec,
    /// The scan reads the points after this time (unix seconds): the window, within the stage.
    pub since: f64,
    /// The look's number in the stage, in the check's steps since the warm-up, from 1.
    pub look: u64,
    /// The look's one-sided significance.
    pub alpha: f64,
}

impl Scan {
    /// `data`'s points in the scan's window.
    pub fn recent(&self, data: &SideData) -> SideData {
        match data {
            SideData::Values(points) => SideData::Values(
                points
                    .iter()
                    .filter(|p| p.t > self.since)
                    .copied()
                    .collect(),
            ),
            SideData::Counts(points) => SideData::Counts(
                points
                    .iter()
                    .filter(|p| p.t > self.since)
                    .copied()
                    .collect(),
            ),
        }
    }

    /// The note a failure found by the scan carries in its evidence.
    pub fn note(&self) -> String {
        format!(
            "failed by the window scan: the stage's points of the last window, look {} of the \
             stage at one-sided significance {:.2e} (the stage's bound had not shown it yet)",
            self.look, self.alpha
        )
    }
}
