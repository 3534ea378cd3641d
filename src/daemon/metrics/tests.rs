//! The registry's rendering, paging and pruning, on `Metrics` alone.

use super::*;

#[test]
fn metrics_come_in_bounded_pages_with_every_series_once_and_in_order() {
    let m = Metrics::new();
    let names: Vec<String> = (0..1500).map(|i| format!("r{i:04}")).collect();
    for name in &names {
        m.inc(
            "canaryd_analyses_total",
            &[("rollout", name), ("verdict", "pass")],
        );
        // Two checks each, counted out of order: the verdicts' own compact family.
        for (check, verdict) in [("p99", "pass"), ("errors", "fail"), ("p99", "fail")] {
            m.inc(
                "canaryd_check_verdicts_total",
                &[("rollout", name), ("check", check), ("verdict", verdict)],
            );
        }
    }
    m.set("canaryd_rules_loaded", &[], 300.0);
    m.observe(
        "canaryd_backend_query_duration_seconds",
        &[("source", "p")],
        0.02,
    );
    let statuses: BTreeMap<String, RolloutStatus> = names[..300]
        .iter()
        .map(|name| {
            let status = RolloutStatus {
                run: 1,
                canary: String::new(),
                name: name.clone(),
                phase: "progressing",
                stage: Some(0),
                stage_name: Some("10%".into()),
                weight: 10,
            };
            (name.clone(), status)
        })
        .collect();
    let listed = statuses.clone();
    let mut pages = Pages::new(m.clone(), move |after, n| {
        statuses_after(&statuses, after, n)
    });
    let mut text = String::new();
    let mut count = 0;
    while let Some(page) = pages.next_page() {
        let lines = page.lines().filter(|l| !l.starts_with('#')).count();
        assert!(
            lines <= PAGE_LINES + PHASES.len(),
            "page {count}: {lines} lines"
        );
        text.push_str(&page);
        count += 1;
    }
    assert!(count >= 5, "{count} pages");
    let family =
        |prefix: &str| -> Vec<&str> { text.lines().filter(|l| l.starts_with(prefix)).collect() };
    let analyses = family("canaryd_analyses_total{");
    let expected: Vec<String> = names
        .iter()
        .map(|n| format!("canaryd_analyses_total{{rollout=\"{n}\",verdict=\"pass\"}} 1"))
        .collect();
    assert_eq!(analyses, expected);
    // Every series once, in the registry's order (rollout, check, verdict), across pages.
    let verdicts = family("canaryd_check_verdicts_total{");
    let expected: Vec<String> = names
        .iter()
        .flat_map(|n| {
            [("errors", "fail"), ("p99", "fail"), ("p99", "pass")].map(|(c, v)| {
                format!(
                    "canaryd_check_verdicts_total{{rollout=\"{n}\",check=\"{c}\",verdict=\"{v}\"}} 1"
                )
            })
        })
        .collect();
    assert_eq!(verdicts, expected);
    assert_eq!(
        m.get(
            "canaryd_check_verdicts_total",
            &[("rollout", "r0007"), ("check", "p99"), ("verdict", "fail")]
        ),
        1.0
    );
    let weights = family("canaryd_rollout_weight{");
    let expected: Vec<String> = names[..300]
        .iter()
        .map(|n| format!("canaryd_rollout_weight{{rollout=\"{n}\"}} 10"))
        .collect();
    assert_eq!(weights, expected);
    let phases = family("canaryd_rollout_phase{");
    assert_eq!(phases.len(), 300 * PHASES.len());
    assert_eq!(
        phases.iter().filter(|l| l.ends_with(" 1")).count(),
        300,
        "one current phase per rollout"
    );
    assert_eq!(family("canaryd_rollout_stage{").len(), 300);
    for header in [
        "# TYPE canaryd_analyses_total counter",
        "# TYPE canaryd_rules_loaded gauge",
        "# TYPE canaryd_backend_query_duration_seconds histogram",
        "# TYPE canaryd_rollout_phase gauge",
    ] {
        assert_eq!(text.matches(header).count(), 1, "{header}");
    }
    assert!(text.contains("canaryd_rules_loaded 300\n"));
    // `render`, the one-string form, is the same text.
    let listed: Vec<RolloutStatus> = listed.into_values().collect();
    assert_eq!(m.render(&listed), text);
}

#[test]
fn a_removed_rollouts_series_and_a_removed_checks_go() {
    let m = Metrics::new();
    let verdicts = "canaryd_check_verdicts_total";
    for (rollout, check) in [("web", "p99"), ("web", "errors"), ("api", "p99")] {
        m.inc(
            verdicts,
            &[("rollout", rollout), ("check", check), ("verdict", "pass")],
        );
        m.set(
            "canaryd_rollout_inconclusive_streak",
            &[("rollout", rollout)],
            1.0,
        );
    }
    m.set("canaryd_backend_up", &[("source", "prometheus")], 1.0);
    m.set("canaryd_rules_loaded", &[], 1.0);
    // `api` is gone and `web` lost its check `errors`.
    m.retain_rollouts(|rollout| (rollout == "web").then(|| vec!["p99".to_string()]));
    let text = m.render(&[]);
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        series,
        [
            "canaryd_check_verdicts_total{rollout=\"web\",check=\"p99\",verdict=\"pass\"} 1",
            "canaryd_rollout_inconclusive_streak{rollout=\"web\"} 1",
            "canaryd_backend_up{source=\"prometheus\"} 1",
            "canaryd_rules_loaded 1",
        ]
    );
}

#[test]
fn renders_counters_gauges_and_rollouts_in_text_format() {
    let m = Metrics::new();
    m.inc(
        "canaryd_analyses_total",
        &[("rollout", "web"), ("verdict", "pass")],
    );
    m.inc(
        "canaryd_analyses_total",
        &[("rollout", "web"), ("verdict", "pass")],
    );
    m.set("canaryd_config_last_reload_successful", &[], 0.0);
    let text = m.render(&[RolloutStatus {
        run: 1,
        canary: String::new(),
        name: "we\"b".into(),
        phase: "progressing",
        stage: Some(1),
        stage_name: Some("50%".into()),
        weight: 50,
    }]);
    assert!(
        text.contains("canaryd_analyses_total{rollout=\"web\",verdict=\"pass\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("canaryd_config_last_reload_successful 0\n"),
        "{text}"
    );
    assert!(
        text.contains("canaryd_rollout_weight{rollout=\"we\\\"b\"} 50\n"),
        "{text}"
    );
    assert!(text.contains("canaryd_rollout_phase{rollout=\"we\\\"b\",phase=\"progressing\"} 1\n"));
    assert!(text.contains("canaryd_rollout_phase{rollout=\"we\\\"b\",phase=\"paused\"} 0\n"));
    assert!(text.contains("canaryd_rollout_stage{rollout=\"we\\\"b\"} 2\n"));
    m.observe(
        "canaryd_backend_query_duration_seconds",
        &[("source", "p")],
        0.02,
    );
    m.observe(
        "canaryd_backend_query_duration_seconds",
        &[("source", "p")],
        30.0,
    );
    let text = m.render(&[]);
    for line in [
        "canaryd_backend_query_duration_seconds_bucket{source=\"p\",le=\"0.01\"} 0\n",
        "canaryd_backend_query_duration_seconds_bucket{source=\"p\",le=\"0.025\"} 1\n",
        "canaryd_backend_query_duration_seconds_bucket{source=\"p\",le=\"10\"} 1\n",
        "canaryd_backend_query_duration_seconds_bucket{source=\"p\",le=\"+Inf\"} 2\n",
        "canaryd_backend_query_duration_seconds_sum{source=\"p\"} 30.02\n",
        "canaryd_backend_query_duration_seconds_count{source=\"p\"} 2\n",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert_eq!(
        m.get(
            "canaryd_analyses_total",
            &[("rollout", "web"), ("verdict", "pass")]
        ),
        2.0
    );
}

#[test]
fn a_rollouts_series_render_by_family_then_rollout_then_labels_and_can_be_removed() {
    let m = Metrics::new();
    let analyses = "canaryd_analyses_total";
    let errors = "canaryd_backend_query_errors_total";
    // Counted out of order, with two families on the same rollouts.
    for (rollout, verdict) in [
        ("web", "pass"),
        ("api", "fail"),
        ("web", "fail"),
        ("web", "pass"),
    ] {
        m.inc(analyses, &[("rollout", rollout), ("verdict", verdict)]);
    }
    m.add(errors, &[("rollout", "web"), ("source", "prom")], 2.0);
    m.set("canaryd_rollout_backend_errors", &[("rollout", "web")], 3.0);
    m.remove("canaryd_rollout_backend_errors", &[("rollout", "web")]);
    assert_eq!(
        m.get("canaryd_rollout_backend_errors", &[("rollout", "web")]),
        0.0
    );
    let text = m.render(&[]);
    let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        series,
        [
            "canaryd_analyses_total{rollout=\"api\",verdict=\"fail\"} 1",
            "canaryd_analyses_total{rollout=\"web\",verdict=\"fail\"} 1",
            "canaryd_analyses_total{rollout=\"web\",verdict=\"pass\"} 2",
            "canaryd_backend_query_errors_total{rollout=\"web\",source=\"prom\"} 2",
        ]
    );
}
