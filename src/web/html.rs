//! The page shell every status page shares (head, style sheet, header) and the small formats
//! the pages share (times, durations, numbers, URL path segments). Markup is built as
//! [`Html`](crate::markup::Html), so text is escaped by construction; nothing here reads state.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::markup::{Html, html, push_html};

/// Escape a path segment for a URL inside an attribute: everything but unreserved characters
/// is percent-encoded, so the result is also safe as HTML.
pub fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A whole page: `title` (text), `body`, and whether it refreshes itself.
pub fn page(title: &str, body: &Html, refresh: bool) -> String {
    let mut out = Html::with_capacity(body.len() + STYLE.len() + 512);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    if refresh {
        out.push_str("<meta http-equiv=\"refresh\" content=\"10\">\n");
    }
    push_html!(out, "<title>{} · canaryd</title>\n<style>", title);
    out.push_str(STYLE);
    push_html!(
        out,
        "</style>\n</head>\n<body>\n\
         <header><a class=\"brand\" href=\"/\">canaryd</a></header>\n<main>\n{}</main>\n\
         </body>\n</html>\n",
        body
    );
    out.into_string()
}

/// A duration in seconds for people: `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A timestamp as `2025-01-31 14:05:09 UTC`, inside a `<time>` element.
pub fn time(at: DateTime<Utc>) -> Html {
    html!(
        "<time datetime=\"{}\">{}</time>",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    )
}

/// A number with at most `digits` significant decimals, without trailing zeros.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return if value.is_nan() {
            "NaN".into()
        } else if value > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    let magnitude = value.abs();
    let text = if magnitude != 0.0 && !(1e-4..1e9).contains(&magnitude) {
        format!("{value:.3e}")
    } else {
        let decimals = if magnitude >= 100.0 {
            2
        } else if magnitude >= 1.0 {
            4
        } else {
            6
        };
        let t = format!("{value:.decimals$}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if text == "-0" { "0".into() } else { text }
}

const STYLE: &str = "
:root{--fg:#1d2430;--muted:#5b6573;--line:#d8dde4;--bg:#f6f7f9;--card:#fff;
--baseline:#2f6db5;--canary:#d9480f;--threshold:#7a1fa2}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#1d2430;padding:10px 24px}
header .brand{color:#fff;font-weight:700;text-decoration:none;font-size:16px}
main{padding:16px 24px;max-width:1240px}
h1{font-size:22px;margin:8px 0 12px}
h2{font-size:17px;margin:24px 0 8px}
h3{font-size:15px;margin:0 0 6px}
a{color:#1f5fa8}
.muted{color:var(--muted)}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:12px 16px;margin:0 0 14px}
table{border-collapse:collapse;width:100%;background:var(--card)}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.03em;color:var(--muted);white-space:nowrap}
td.nowrap{white-space:nowrap}
td.stages{min-width:280px}
.banner{background:#b3261e;color:#fff;padding:12px 16px;border-radius:6px;margin:0 0 14px;font-weight:600}
.notice{background:#fff4e5;border:1px solid #f0c36d;padding:8px 12px;border-radius:6px;margin:0 0 14px}
.phase{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.phase-pending{background:#8a939e}.phase-progressing{background:#1f6fc5}
.phase-waiting-approval{background:#7048c2}.phase-paused{background:#c77700}
.phase-rolled-back{background:#c92a2a}.phase-succeeded{background:#2b8a3e}
.phase-aborted{background:#495057}.phase-emergency-stopped{background:#7d0d0d}
.verdict{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px;font-weight:600}
.verdict-pass{background:#d3f9d8;color:#1b5e20}.verdict-fail{background:#ffe3e3;color:#a61e1e}
.verdict-inconclusive,.verdict-marginal{background:#fff3bf;color:#7a5a00}
.chips{display:flex;gap:4px;flex-wrap:wrap}
.chip{border-radius:4px;padding:1px 7px;font-size:12px;border:1px solid var(--line);white-space:nowrap}
.chip-done{background:#d3f9d8;border-color:#8ce99a}
.chip-current{background:#1f6fc5;border-color:#1f6fc5;color:#fff;font-weight:600}
.chip-pending{background:#f1f3f5;color:var(--muted)}
.chip-rolled-back{background:#c92a2a;border-color:#c92a2a;color:#fff;font-weight:600}
.phase-held{background:#b3261e}
.act pre{margin:6px 0 0;white-space:pre-wrap}
.chart .moment line{stroke-width:1.5;stroke-dasharray:2 3}
.chart .moment-stage line{stroke:#495057}.chart .moment-fail line{stroke:#c92a2a}
.chart .moment text{font-size:10px}.chart .moment-fail text{fill:#c92a2a}
.weight{display:inline-block;width:60px;height:8px;background:#e9ecef;border-radius:4px;vertical-align:middle;margin-right:6px;overflow:hidden}
.weight span{display:block;height:100%;background:var(--canary)}
.checks{display:grid;grid-template-columns:1fr;gap:14px}
.check-body{display:grid;grid-template-columns:minmax(0,720px) minmax(260px,1fr);gap:8px 20px;align-items:start}
@media (max-width:1000px){.check-body{grid-template-columns:1fr}}
.check-head{display:flex;gap:10px;align-items:baseline;flex-wrap:wrap}
.chart{width:100%;max-width:720px;height:auto;display:block;margin:6px 0}
.chart text{font:11px system-ui,sans-serif;fill:var(--muted)}
.chart .axis{stroke:#868e96;stroke-width:1}
.chart .grid{stroke:#eef0f3;stroke-width:1}
.chart .baseline{fill:none;stroke:var(--baseline);stroke-width:2}
.chart .canary{fill:none;stroke:var(--canary);stroke-width:2}
.chart .dot-baseline{fill:var(--baseline)}.chart .dot-canary{fill:var(--canary)}
.chart .threshold{stroke:var(--threshold);stroke-width:1.5;stroke-dasharray:6 4;fill:none}
.chart .band{fill:var(--threshold);fill-opacity:.08;stroke:var(--threshold);stroke-width:1;stroke-dasharray:6 4}
.chart .legend-baseline{fill:var(--baseline)}.chart .legend-canary{fill:var(--canary)}
.nodata{padding:24px;text-align:center;color:var(--muted);background:#f8f9fa;border:1px dashed var(--line);border-radius:6px;max-width:720px}
dl.evidence{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0 0}
dl.evidence dt{color:var(--muted)}dl.evidence dd{margin:0}
.pager{margin:8px 0}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_segments_are_percent_encoded() {
        assert_eq!(url_segment("api-v2_x.y"), "api-v2_x.y");
        assert_eq!(url_segment("a b/\"<c>"), "a%20b%2F%22%3Cc%3E");
    }

    #[test]
    fn page_escapes_its_title_and_refreshes_only_when_asked() {
        let p = page("<b>", &Html::literal("<p>body</p>"), true);
        assert!(p.contains("<title>&lt;b&gt; · canaryd</title>"));
        assert!(p.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
        assert!(!page("x", &Html::new(), false).contains("http-equiv"));
    }

    #[test]
    fn durations_and_numbers_read_well() {
        assert_eq!(human_duration(-3), "0s");
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(192), "3m 12s");
        assert_eq!(human_duration(7500), "2h 5m");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600), "3d 4h");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(123.456), "123.46");
        assert_eq!(number(0.000_012), "1.200e-5");
        assert_eq!(number(f64::NAN), "NaN");
    }
}
