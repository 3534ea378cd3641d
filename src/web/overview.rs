//! `GET /`: every rollout in one table (stage chips, phase, weight, last decision and its reason,
//! time in stage), the emergency-stop banner and the notification counts. Pure: views in, HTML
//! out; the parts a rollout's own page reuses (phase badge, stage chips, time in stage) live here.

use chrono::{DateTime, Utc};

use super::html::{human_duration, page, time, url_segment};
use super::{RolloutView, StopView};
use crate::daemon::status::phase_name;
use crate::markup::{Html, html, push_html};
use crate::rollout::Phase;
use crate::store::OutboxCounts;

/// What the overview shows.
#[derive(Debug, Clone, Copy)]
pub struct Overview<'a> {
    pub rollouts: &'a [RolloutView],
    pub stop: &'a StopView,
    /// Notification counts, when they could be read.
    pub outbox: Option<OutboxCounts>,
    pub now: DateTime<Utc>,
}

/// A coloured badge naming the phase (its CSS class is `phase-<kebab name>`).
pub fn phase_badge(phase: &Phase) -> Html {
    html!(
        "<span class=\"phase phase-{}\">{}</span>",
        phase_name(phase),
        phase.name()
    )
}

/// Where a stage stands relative to the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageMark {
    Done,
    Current,
    Pending,
    /// The stage the rollout was rolled back from.
    RolledBack,
}

/// Each stage's mark, given the phase and, for a rolled-back rollout, the stage it was rolled
/// back from (its earlier stages are done).
pub fn stage_marks(phase: &Phase, stages: usize, rolled_back: Option<usize>) -> Vec<StageMark> {
    (0..stages)
        .map(|i| match (phase, phase.stage(), rolled_back) {
            (Phase::Succeeded, _, _) => StageMark::Done,
            (Phase::RolledBack { .. }, _, Some(at)) if i < at => StageMark::Done,
            (Phase::RolledBack { .. }, _, Some(at)) if i == at => StageMark::RolledBack,
            (_, Some(current), _) if i < current => StageMark::Done,
            (_, Some(current), _) if i == current => StageMark::Current,
            _ => StageMark::Pending,
        })
        .collect()
}

/// The row of stage chips: done / current / pending (or rolled back from), each with its
/// weight.
pub fn stage_chips(view: &RolloutView) -> Html {
    let Some(rule) = &view.rule else {
        return Html::literal("<span class=\"muted\">no rule file loaded</span>");
    };
    let stages = &rule.plan.stages;
    let mut out = Html::literal("<div class=\"chips\">");
    for (stage, mark) in stages.iter().zip(stage_marks(
        &view.state.phase,
        stages.len(),
        view.rolled_back_stage,
    )) {
        let (class, what) = match mark {
            StageMark::Done => ("done", "done"),
            StageMark::Current => ("current", "current"),
            StageMark::Pending => ("pending", "pending"),
            StageMark::RolledBack => ("rolled-back", "rolled back from here"),
        };
        let weight = format!("{}%", stage.weight);
        let text = if stage.name == weight {
            weight
        } else {
            format!("{} · {weight}", stage.name)
        };
        push_html!(
            out,
            "<span class=\"chip chip-{}\" title=\"stage {} ({})\">{}</span>",
            class,
            stage.name,
            what,
            text
        );
    }
    out.push_str("</div>");
    out
}

/// The metric backend's outage as a banner, from its first failed analysis (the rollout holds
/// from then on); empty while the backend answers.
pub fn outage_banner(view: &RolloutView) -> Html {
    let failed = view.state.backend_errors;
    if failed == 0 {
        return Html::new();
    }
    let analyses = if failed == 1 {
        "the last analysis".to_string()
    } else {
        format!("the last {failed} analyses")
    };
    html!(
        "<div class=\"banner outage\" role=\"alert\">The metric backend is failing: {} could \
         not run, so the rollout holds at {}% until it answers (the history has its error).</div>\n",
        analyses,
        view.state.weight
    )
}

/// A badge next to the phase while the metric backend fails.
pub fn outage_badge(view: &RolloutView) -> Html {
    match view.state.backend_errors {
        0 => Html::new(),
        n => html!(
            " <span class=\"phase phase-held\" title=\"{} analyses in a row failed on the metric \
             backend\">backend failing</span>",
            n
        ),
    }
}

/// How long the rollout has been in its current stage; a dash when it is not at one.
pub fn time_in_stage(view: &RolloutView, now: DateTime<Utc>) -> String {
    match (view.state.phase.stage(), view.state.stage_started_at) {
        (Some(_), Some(since)) => human_duration((now - since).num_seconds()),
        _ => "—".into(),
    }
}

/// A weight as a number and a small bar.
pub fn weight_bar(weight: u8) -> Html {
    html!(
        "<span class=\"weight\" aria-hidden=\"true\"><span style=\"width:{}%\"></span></span>{}%",
        weight.min(100),
        weight
    )
}

/// The emergency-stop banner, empty when it is not in force.
pub fn stop_banner(stop: &StopView) -> Html {
    if !stop.active {
        return Html::new();
    }
    html!(
        "<div class=\"banner\" role=\"alert\">EMERGENCY STOP in force: every rollout is held at \
         0%. Reason: {}</div>\n",
        stop.reason
    )
}

fn last_decision(view: &RolloutView) -> Html {
    match &view.last {
        None => Html::literal("<span class=\"muted\">none yet</span>"),
        Some(entry) => {
            let weights = match (entry.previous_weight, entry.new_weight) {
                (Some(a), Some(b)) if a != b => format!(" ({a}% → {b}%)"),
                _ => String::new(),
            };
            html!(
                "<strong>{}</strong>{}<div class=\"reason\">{}</div>\
                 <div class=\"muted\">{} by {}</div>",
                entry.action,
                weights,
                entry.reason,
                time(entry.at),
                entry.triggered_by
            )
        }
    }
}

/// The whole overview page.
pub fn render(o: &Overview<'_>) -> String {
    let mut body = Html::with_capacity(4096);
    body.push_str("<h1>Rollouts</h1>\n");
    body.push_html(&stop_banner(o.stop));
    if let Some(counts) = o.outbox
        && (counts.failed > 0 || counts.pending > 0)
    {
        push_html!(
            body,
            "<div class=\"notice\">Notifications: {} failed, {} pending delivery.</div>\n",
            counts.failed,
            counts.pending
        );
    }
    if o.rollouts.is_empty() {
        body.push_str(
            "<p class=\"card\">No rollouts: add a rule file to the rules directory and reload.</p>\n",
        );
    } else {
        body.push_str(
            "<table class=\"rollouts\">\n<thead><tr><th>Rollout</th><th>Phase</th><th>Weight</th>\
             <th>Stages</th><th>Last decision</th><th>In stage</th></tr></thead>\n<tbody>\n",
        );
        for view in o.rollouts {
            push_html!(
                body,
                "<tr class=\"rollout\"><td><a href=\"/rollouts/{}\">{}</a></td><td>{}{}</td>\
                 <td class=\"nowrap\">{}</td><td class=\"stages\">{}</td><td>{}</td><td class=\"nowrap\">{}</td></tr>\n",
                url_segment(&view.name),
                view.name,
                phase_badge(&view.state.phase),
                outage_badge(view),
                weight_bar(view.state.weight),
                stage_chips(view),
                last_decision(view),
                time_in_stage(view, o.now),
            );
        }
        body.push_str("</tbody>\n</table>\n");
    }
    if let Some(counts) = o.outbox {
        push_html!(
            body,
            "<p class=\"muted\">Notifications: {} sent, {} pending, {} failed. Updated {}; this \
             page refreshes every 10 seconds.</p>\n",
            counts.sent,
            counts.pending,
            counts.failed,
            time(o.now)
        );
    } else {
        push_html!(
            body,
            "<p class=\"muted\">Updated {}; this page refreshes every 10 seconds.</p>\n",
            time(o.now)
        );
    }
    page("Rollouts", &body, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::RolloutState;
    use crate::store::AuditEntry;

    fn view(name: &str, phase: Phase, reason: &str) -> RolloutView {
        let state = RolloutState {
            phase,
            weight: 25,
            stage_started_at: Some(DateTime::from_timestamp(1_000, 0).unwrap()),
            ..RolloutState::default()
        };
        RolloutView {
            name: name.into(),
            rule: None,
            state,
            last: Some(AuditEntry {
                run: 1,
                id: 1,
                rollout: name.into(),
                at: DateTime::from_timestamp(1_000, 0).unwrap(),
                action: "paused".into(),
                previous_weight: Some(25),
                new_weight: Some(25),
                reason: reason.into(),
                triggered_by: "operator:<eve>".into(),
            }),
            rolled_back_stage: None,
        }
    }

    #[test]
    fn stages_before_the_current_one_are_done_and_later_ones_pending() {
        use StageMark::*;
        assert_eq!(
            stage_marks(&Phase::Progressing { stage: 1 }, 3, None),
            [Done, Current, Pending]
        );
        assert_eq!(stage_marks(&Phase::Succeeded, 2, None), [Done, Done]);
        assert_eq!(stage_marks(&Phase::Pending, 2, None), [Pending, Pending]);
        let rolled_back = Phase::RolledBack { reason: "x".into() };
        assert_eq!(stage_marks(&rolled_back, 2, None), [Pending, Pending]);
        // The stage it was rolled back from is marked, the ones before it done.
        assert_eq!(
            stage_marks(&rolled_back, 3, Some(1)),
            [Done, RolledBack, Pending]
        );
    }

    #[test]
    fn reasons_and_names_are_escaped_and_the_banner_shows_only_when_active() {
        let rollouts = [view(
            "a<b",
            Phase::Progressing { stage: 0 },
            "<script>alert(1)</script>",
        )];
        let stop = StopView {
            active: true,
            reason: "<img src=x>".into(),
        };
        let now = DateTime::from_timestamp(1_192, 0).unwrap();
        let html = render(&Overview {
            rollouts: &rollouts,
            stop: &stop,
            outbox: Some(OutboxCounts {
                pending: 2,
                sent: 5,
                failed: 1,
                superseded: 0,
            }),
            now,
        });
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("href=\"/rollouts/a%3Cb\">a&lt;b</a>"));
        assert!(html.contains("EMERGENCY STOP") && html.contains("&lt;img src=x&gt;"));
        assert!(html.contains("1 failed, 2 pending delivery"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(html.contains(">3m 12s<"), "time in stage");
        assert!(html.contains("phase-progressing"));

        let calm = render(&Overview {
            rollouts: &rollouts,
            stop: &StopView::default(),
            outbox: None,
            now,
        });
        assert!(!calm.contains("EMERGENCY STOP"));
    }
}
