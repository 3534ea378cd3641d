//! Tests of [`super`]: the rollout page's marks, evidence, history and verdicts.

use super::*;
use serde_json::json;

fn result(thresholds: Value, baseline: Value) -> Value {
    json!({
        "name": "latency",
        "verdict": {"outcome": "fail"},
        "reason": "canary <b>worse</b>",
        "evidence": {
            "baseline": baseline,
            "canary": {"points": 60, "dropped": 2},
            "effect": {"ratio": 1.25, "difference": 0.025,
                       "interval": {"low": 1.1, "high": 1.4, "confidence": 0.99, "scale": "ratio"}},
            "p_value": 0.0012,
            "test": "Wilcoxon signed-rank",
            "comparison": "paired",
            "thresholds": thresholds,
        }
    })
}

#[test]
fn thresholds_become_lines_and_tolerances_lines_or_bands_around_the_baseline() {
    let abs = result(
        json!({"direction": "higher-is-worse", "confidence": 0.99, "min_samples": 3, "threshold": 0.5}),
        json!({"points": 60, "dropped": 0}),
    );
    assert_eq!(
        marks(&abs, Unit::Seconds, &[]),
        [Mark::Line {
            value: 0.5,
            label: "threshold 500 ms".into()
        }]
    );
    let rel = result(
        json!({"direction": "higher-is-worse", "confidence": 0.99, "min_samples": 3, "tolerance": 0.1}),
        json!({"points": 60, "dropped": 0, "median": 0.2}),
    );
    match &marks(&rel, Unit::Seconds, &[])[..] {
        [Mark::Line { value, label }] => {
            assert!((value - 0.22).abs() < 1e-12);
            assert_eq!(label, "tolerance: baseline median + 10%");
        }
        other => panic!("{other:?}"),
    }
    let either = result(
        json!({"direction": "either", "confidence": 0.99, "min_samples": 3, "tolerance": 0.001}),
        json!({"points": 60, "dropped": 0, "rate": 0.01}),
    );
    match &marks(&either, Unit::Fraction, &[])[..] {
        [Mark::Band { low, high, .. }] => {
            assert!((low - 0.009).abs() < 1e-12 && (high - 0.011).abs() < 1e-12)
        }
        other => panic!("{other:?}"),
    }
    let trend = result(
        json!({"direction": "higher-is-worse", "confidence": 0.99, "min_samples": 3, "max_slope_per_minute": 6.0}),
        json!({"points": 60, "dropped": 0}),
    );
    match &marks(&trend, Unit::Plain, &[(f64::NAN, 1.0), (100.0, 5.0)])[..] {
        [
            Mark::Slope {
                t0, v0, per_second, ..
            },
        ] => {
            assert_eq!((*t0, *v0, *per_second), (100.0, 5.0, 0.1))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn history_is_newest_first_with_links_to_older_pages_and_back() {
    let entry = |id: i64, reason: &str| AuditEntry {
        id,
        rollout: "a b".into(),
        at: DateTime::from_timestamp(id, 0).unwrap(),
        action: "paused".into(),
        previous_weight: Some(10),
        new_weight: Some(0),
        reason: reason.into(),
        triggered_by: "operator:alice".into(),
        run: 1,
    };
    let rollout = RolloutView {
        name: "a b".into(),
        rule: None,
        state: crate::rollout::RolloutState::default(),
        last: None,
        rolled_back_stage: None,
    };
    let history = Page {
        items: vec![entry(9, "newer"), entry(8, "<older>")],
        next: Some("8".parse().unwrap()),
    };
    let detail = Detail {
        rollout: &rollout,
        analyses: &[],
        history: &history,
        runs: &[],
        run: 1,
        paged: true,
        stop: &StopView::default(),
        rule_file_problems: &[],
        audit: &[],
        public_url: None,
        now: DateTime::from_timestamp(100, 0).unwrap(),
    };
    let html = history_table(&detail).into_string();
    assert!(html.find("newer").unwrap() < html.find("&lt;older&gt;").unwrap());
    assert!(html.contains("10% → 0%"));
    assert!(
        html.contains("href=\"/rollouts/a%20b?cursor=8\">Older →</a>"),
        "{html}"
    );
    assert!(html.contains("href=\"/rollouts/a%20b\">← Newest</a>"));
    let last = Page {
        items: vec![],
        next: None,
    };
    let html = history_table(&Detail {
        history: &last,
        paged: false,
        ..detail
    })
    .into_string();
    assert!(html.contains("No history yet") && !html.contains("Older"));
    let page = render(&detail);
    assert!(page.contains("No analysis has run yet"));
    assert!(!page.contains("rule file does not load"));
}

#[test]
fn a_broken_rule_file_is_shown_with_its_problems_escaped() {
    let rollout = RolloutView {
        name: "api".into(),
        rule: None,
        state: crate::rollout::RolloutState::default(),
        last: None,
        rolled_back_stage: None,
    };
    let problems = ["rules/api.toml:3:1: error: unknown key `<x>`".to_string()];
    let page = render(&Detail {
        rollout: &rollout,
        analyses: &[],
        history: &Page {
            items: vec![],
            next: None,
        },
        runs: &[],
        run: 1,
        paged: false,
        stop: &StopView::default(),
        rule_file_problems: &problems,
        audit: &[],
        public_url: None,
        now: DateTime::from_timestamp(100, 0).unwrap(),
    });
    assert!(page.contains("Its rule file does not load"), "{page}");
    assert!(
        page.contains("rules/api.toml:3:1: error: unknown key `&lt;x&gt;`"),
        "{page}"
    );
}

#[test]
fn evidence_shows_test_p_value_effect_interval_and_points_escaped() {
    let r = result(
        json!({"direction": "higher-is-worse", "confidence": 0.99, "min_samples": 3, "tolerance": 0.1}),
        json!({"points": 58, "dropped": 2, "median": 0.1}),
    );
    let html = evidence(&r, Unit::Seconds).into_string();
    assert!(html.contains("Wilcoxon signed-rank"));
    assert!(html.contains(">0.0012<"));
    // In the unit of the tolerance (a relative one: percent), then the ratio.
    assert!(html.contains(">+25%, ratio 1.25<"), "{html}");
    assert!(html.contains("[1.1, 1.4] at 99% confidence (ratio)"));
    assert!(html.contains("58 points, 2 dropped · median 100 ms"));
    // How the answers were read (issue 18, point 4), one note a line, escaped; none, no row.
    assert!(!html.contains("Notes"));
    let mut noted = r.clone();
    noted["evidence"]["notes"] = json!(["canary: errors query returned no series", "<b>"]);
    let html = evidence(&noted, Unit::Seconds).into_string();
    let want = "<dt>Notes</dt><dd class=\"notes\">canary: errors query returned no series<br>&lt;b&gt;</dd>";
    assert!(html.contains(want), "{html}");
    // Which rule decided and its bound (issue 18 point 3); none recorded, no row.
    assert!(!html.contains("Decided by"));
    let mut decided = r.clone();
    decided["evidence"]["decision"] =
        json!({"rule": "not-shown", "bound": 1.31, "limit": 1.1, "scale": "ratio"});
    let html = evidence(&decided, Unit::Seconds).into_string();
    let want = "<dt>Decided by</dt><dd class=\"decision\">not shown either way: bound 1.31 vs limit 1.1 (ratio)</dd>";
    assert!(html.contains(want), "{html}");
    // A staged check whose stage's evidence is still accruing says so (issue 19).
    decided["verdict"] = json!({"outcome": "inconclusive", "cause": "accruing"});
    let html = evidence(&decided, Unit::Seconds).into_string();
    let want = "<dd class=\"decision\">accruing over the stage, the next analyses decide: bound 1.31 vs limit 1.1 (ratio)</dd>";
    assert!(html.contains(want), "{html}");
    let analysis = Analysis {
        run: 1,
        id: 1,
        rollout: "api".into(),
        at: DateTime::from_timestamp(0, 0).unwrap(),
        outcome: "fail".into(),
        score: Some(0.0),
        evidence: json!({"checks": [r], "series": [
            {"check": "latency", "baseline": [[0.0, 0.1], [60.0, null]], "canary": []}
        ]}),
    };
    let card = check_card("latency", Unit::Seconds, Some(&analysis), &[]).into_string();
    assert!(card.contains("canary &lt;b&gt;worse&lt;/b&gt;"), "{card}");
    assert!(card.contains("<svg"));
    let missing = check_card("errors", Unit::Fraction, Some(&analysis), &[]).into_string();
    assert!(missing.contains("class=\"nodata\"") && missing.contains("Not judged yet"));
}

#[test]
fn chart_times_after_t0_draw_the_same_chart_as_absolute_times() {
    let absolute = json!({"series": [{"check": "latency",
        "baseline": [[1_700_000_000.0, 0.1], [1_700_000_060.0, 0.2]],
        "canary": [[1_700_000_030.0, 0.15]]}]});
    let relative = json!({"series": [{"check": "latency", "t0": 1_700_000_000.0,
        "baseline": [[0.0, 0.1], [60.0, 0.2]],
        "canary": [[30.0, 0.15]]}]});
    let card = |evidence: Value| {
        let analysis = Analysis {
            run: 1,
            id: 1,
            rollout: "api".into(),
            at: DateTime::from_timestamp(1_700_000_100, 0).unwrap(),
            outcome: "pass".into(),
            score: Some(1.0),
            evidence,
        };
        check_card("latency", Unit::Seconds, Some(&analysis), &[]).into_string()
    };
    let (a, r) = (card(absolute), card(relative));
    assert!(a.contains("<svg"), "{a}");
    assert_eq!(a, r);
}

#[test]
fn a_check_that_cannot_judge_says_so_and_why() {
    let mut r = result(
        json!({"direction": "higher-is-worse", "confidence": 0.99, "min_samples": 3, "tolerance": 0.1}),
        json!({"points": 0, "dropped": 0}),
    );
    let why = crate::judge::NOT_APPLICABLE_AT_100;
    r["verdict"] = json!({"outcome": "inconclusive", "reason": why, "cause": "not-applicable"});
    assert_eq!(check_verdict(&r), Some("not applicable"));
    r["verdict"]["cause"] = json!("no-data");
    assert_eq!(check_verdict(&r), Some("inconclusive"));
    // The cause is a stable word next to the badge, and in its `data-cause`.
    assert_eq!(
        check_badge(&r).as_str(),
        "<span class=\"verdict verdict-inconclusive\" data-cause=\"no-data\">inconclusive\
         </span> <code class=\"cause\">no-data</code>"
    );
    r["verdict"] = json!({"outcome": "fail"});
    assert_eq!(
        check_badge(&r).as_str(),
        "<span class=\"verdict verdict-fail\">fail</span>"
    );
}

#[test]
fn an_error_rate_effect_reads_in_percentage_points_like_its_tolerance() {
    let mut r = result(
        json!({"direction": "higher-is-worse", "confidence": 0.99, "min_samples": 3, "tolerance": 0.01}),
        json!({"points": 30, "dropped": 0, "rate": 0.005}),
    );
    r["evidence"]["canary"]["rate"] = json!(0.007_768_364_397_488_289);
    r["evidence"]["effect"] = json!({"ratio": 1.55, "difference": 0.002_768_364_397_488_288_5});
    let html = evidence(&r, Unit::Fraction).into_string();
    assert!(html.contains(">+0.28 pp, ratio 1.55<"), "{html}");
    match &marks(&r, Unit::Fraction, &[])[..] {
        [Mark::Line { label, .. }] => assert_eq!(label, "tolerance: baseline rate + 1 pp"),
        other => panic!("{other:?}"),
    }
}
