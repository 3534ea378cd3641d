//! The runs of a rollout on its page: which run the page shows, and links to the others. A run
//! is one canary version taken through the plan; each has its own analyses and history. Pure
//! rendering of plain records into [`Html`], which escapes every text.

use super::html::{time, url_segment};
use crate::markup::{Html, html, push_html};
use crate::store::RunRecord;

/// The link to run `run` of rollout `name`.
pub fn link(name: &str, run: u32) -> String {
    format!("/rollouts/{}?run={run}", url_segment(name))
}

/// The "Runs" card: the run shown, the current one, and the others with their outcomes.
pub fn section(name: &str, runs: &[RunRecord], shown: u32, current: u32) -> Html {
    let mut out = Html::literal("<div class=\"card\"><h2>Runs</h2>\n");
    if shown != current {
        push_html!(
            out,
            "<p class=\"banner\">This is run {}, not the current one. \
             <a href=\"{}\">Go to run {} (current)</a>.</p>\n",
            shown,
            link(name, current),
            current
        );
    }
    if runs.is_empty() {
        out.push_str("<p class=\"muted\">No run has started yet.</p>\n</div>\n");
        return out;
    }
    out.push_str(
        "<table><thead><tr><th>Run</th><th>Canary</th><th>Started</th><th>By</th>\
         <th>Last</th></tr></thead><tbody>\n",
    );
    for r in runs {
        let label = match (r.run == shown, r.run == current) {
            (true, true) => html!("<strong>{} (current, shown)</strong>", r.run),
            (true, false) => html!("<strong>{} (shown)</strong>", r.run),
            (false, true) => html!("<a href=\"{}\">{} (current)</a>", link(name, r.run), r.run),
            (false, false) => html!("<a href=\"{}\">{}</a>", link(name, r.run), r.run),
        };
        let canary = match r.canary.as_str() {
            "" => Html::literal("<span class=\"muted\">not recorded</span>"),
            c => html!("<code>{}</code>", c),
        };
        let last = match (&r.last_action, r.last_at) {
            (Some(action), Some(at)) => html!("{} {}", action, time(at)),
            _ => Html::literal("—"),
        };
        push_html!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            label,
            canary,
            time(r.started_at),
            r.started_by,
            last
        );
    }
    out.push_str("</tbody></table></div>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn run(n: u32, canary: &str, last: Option<&str>) -> RunRecord {
        RunRecord {
            run: n,
            canary: canary.into(),
            started_at: DateTime::from_timestamp(i64::from(n) * 100, 0).unwrap(),
            started_by: "operator `ci<bot>`".into(),
            last_action: last.map(str::to_string),
            last_at: last.map(|_| DateTime::from_timestamp(i64::from(n) * 100 + 50, 0).unwrap()),
        }
    }

    #[test]
    fn the_runs_card_marks_the_shown_and_current_runs_and_links_the_others_escaped() {
        let runs = [run(2, "v<3>", None), run(1, "v2", Some("rolled-back"))];
        let html = section("a b", &runs, 1, 2).into_string();
        assert!(
            html.contains("This is run 1, not the current one"),
            "{html}"
        );
        assert!(
            html.contains("href=\"/rollouts/a%20b?run=2\">2 (current)</a>"),
            "{html}"
        );
        assert!(html.contains("<strong>1 (shown)</strong>"), "{html}");
        assert!(html.contains("<code>v&lt;3&gt;</code>") && !html.contains("v<3>"));
        assert!(html.contains("ci&lt;bot&gt;") && html.contains("rolled-back"));
        let current = section("a b", &runs, 2, 2).into_string();
        assert!(!current.contains("not the current one"));
        assert!(current.contains("<strong>2 (current, shown)</strong>"));
        assert!(
            section("x", &[], 1, 1)
                .as_str()
                .contains("No run has started yet")
        );
    }
}
