//! What a person can do about a rollout now, on its page: why it waits when it waits for
//! approval, and the commands its phase allows, complete so they run as printed (the same
//! command lines the notifications print: [`crate::notify::command_line`]). Pure: a view in,
//! markup out.

use super::RolloutView;
use crate::markup::{Html, html, push_html};
use crate::notify::command_line::{TOKEN_FILE, command_line};
use crate::notify::notification::commands;
use crate::rollout::Phase;

/// Why a rollout waiting for approval waits, and what approving does; empty in another phase.
pub fn approval_notice(view: &RolloutView) -> Html {
    let Phase::WaitingApproval { stage } = view.state.phase else {
        return Html::new();
    };
    let stages = view.rule.as_ref().map(|r| &r.plan.stages);
    let Some(this) = stages.and_then(|s| s.get(stage)) else {
        return html!(
            "<div class=\"notice approval\">This rollout waits for approval at stage {}: a \
             person must approve before it advances.</div>\n",
            stage + 1
        );
    };
    let next = match stages.and_then(|s| s.get(stage + 1)) {
        Some(next) => format!("moves the canary to stage {} ({}%)", next.name, next.weight),
        None => "completes the rollout".to_string(),
    };
    html!(
        "<div class=\"notice approval\" role=\"status\">This rollout waits for approval: stage \
         {} ({}%) has its evidence ({} passing analyses of {} needed, its minimum time served) \
         and its rule asks a person to approve leaving it (<code>approval = true</code>). \
         Approving {}.</div>\n",
        this.name,
        this.weight,
        view.state.passes,
        this.required_passes,
        next
    )
}

/// The commands the rollout's phase allows, most likely first, each in a
/// `<code class="command">`; empty when none does (an aborted rollout).
pub fn commands_card(view: &RolloutView, public_url: Option<&str>) -> Html {
    let allowed = commands(&view.state.phase);
    if allowed.is_empty() {
        return Html::new();
    }
    let mut lines = Html::new();
    for command in allowed {
        push_html!(
            lines,
            "<code class=\"command\">{}</code>\n",
            command_line(*command, &view.name, public_url)
        );
    }
    html!(
        "<div class=\"card act\"><h2>Act</h2><p class=\"muted\">With an admin token in <code>{}\
         </code>; replace the reason.</p><pre>{}</pre></div>\n",
        TOKEN_FILE,
        lines
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::RolloutState;

    fn view(phase: Phase) -> RolloutView {
        let rule = crate::rules::parse_rule(
            std::path::Path::new("rules/web.toml"),
            include_str!("../../tests/fixtures/rules/good/web.toml"),
            &Default::default(),
        )
        .unwrap();
        RolloutView {
            name: "web".into(),
            rule: Some(std::sync::Arc::new(rule)),
            state: RolloutState {
                phase,
                passes: 3,
                ..RolloutState::default()
            },
            last: None,
            rolled_back_stage: None,
        }
    }

    #[test]
    fn a_rollout_waiting_for_approval_says_why_and_prints_the_approve_command() {
        let v = view(Phase::WaitingApproval { stage: 0 });
        let notice = approval_notice(&v).into_string();
        let first = &v.rule.as_ref().unwrap().plan.stages[0];
        assert!(
            notice.contains(&format!("waits for approval: stage {} ", first.name)),
            "{notice}"
        );
        assert!(notice.contains("3 passing analyses"), "{notice}");
        let card = commands_card(&v, Some("https://canary.example.com")).into_string();
        assert!(
            card.contains(
                "<code class=\"command\">canaryd approve web --url \
                 https://canary.example.com --token-file ~/.config/canaryd/token --reason \
                 &quot;...&quot;</code>"
            ),
            "{card}"
        );
        assert!(approval_notice(&view(Phase::Succeeded)).is_empty());
        assert!(commands_card(&view(Phase::Aborted), None).is_empty());
    }
}
