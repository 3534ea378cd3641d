//! The example alerting rules for canaryd itself (`docs/alerts.yml`) against the real
//! `promtool`: they load, their unit tests (`docs/alerts.test.yml`) pass, and every canaryd
//! metric they name is one the daemon exports.

use std::path::Path;
use std::process::Command;

use crate::prometheus_support::promtool;

fn docs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

fn run(args: &[&str]) {
    let output = Command::new(promtool())
        .args(args)
        .current_dir(docs())
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_example_alerting_rules_load_and_their_unit_tests_pass() {
    run(&["check", "rules", "alerts.yml"]);
    run(&["test", "rules", "alerts.test.yml"]);
}

#[test]
fn every_canaryd_metric_the_alerts_name_is_exported() {
    let rules = std::fs::read_to_string(docs().join("alerts.yml")).unwrap();
    let exported = canaryd::daemon::Metrics::new().render(&[]);
    let names: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("canaryd_"))
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            exported.contains(&format!("# TYPE {name} ")),
            "docs/alerts.yml names `{name}`, which canaryd does not export"
        );
    }
}
