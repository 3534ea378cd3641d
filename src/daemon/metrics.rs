//! The daemon's own metrics, rendered in the Prometheus text format for `/metrics`.
//!
//! A small registry of counters and gauges keyed by name and labels; rollout weights and phases
//! are read from the rollouts' published status at render time. It owns the metric names and
//! their help texts, nothing else.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::status::RolloutStatus;

type Labels = Vec<(&'static str, String)>;

/// Counters and gauges the daemon updates as it works.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(&'static str, Labels), f64>>,
}

/// Help texts and types of the metrics the daemon updates.
const HELP: &[(&str, &str, &str)] = &[
    (
        "canaryd_analyses_total",
        "counter",
        "Analyses judged, by rollout and verdict.",
    ),
    (
        "canaryd_backend_query_errors_total",
        "counter",
        "Analyses that failed on a metric backend error, by rollout and source.",
    ),
    (
        "canaryd_actuator_failures_total",
        "counter",
        "Weight changes an actuator failed to apply, by rollout and actuator.",
    ),
    (
        "canaryd_rollout_task_restarts_total",
        "counter",
        "Rollout tasks restarted after a panic.",
    ),
    (
        "canaryd_config_last_reload_successful",
        "gauge",
        "Whether the last rule reload succeeded (1) or failed (0).",
    ),
    (
        "canaryd_config_last_reload_timestamp_seconds",
        "gauge",
        "Unix time of the last successful rule reload.",
    ),
    (
        "canaryd_emergency_stop_active",
        "gauge",
        "Whether an emergency stop is in force.",
    ),
    (
        "canaryd_rules_loaded",
        "gauge",
        "Rollout rules currently loaded.",
    ),
];

const PHASES: [&str; 8] = [
    "pending",
    "progressing",
    "waiting-approval",
    "paused",
    "rolled-back",
    "succeeded",
    "aborted",
    "emergency-stopped",
];

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(&'static str, Labels), f64>> {
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let key = (name, own(labels));
        *self.lock().entry(key).or_insert(0.0) += 1.0;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        self.lock().insert((name, own(labels)), value);
    }

    /// A series' current value (0 when never touched), for tests and status lines.
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
        self.lock()
            .get(&(name, own(labels)))
            .copied()
            .unwrap_or(0.0)
    }

    /// Everything, in the text exposition format.
    pub fn render(&self, rollouts: &[RolloutStatus]) -> String {
        let mut out = String::new();
        let series = self.lock().clone();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, labels), value) in &series {
                if n == name {
                    let _ = writeln!(out, "{name}{} {}", render_labels(labels), number(*value));
                }
            }
        }
        out.push_str("# HELP canaryd_rollout_weight The canary's share of traffic, 0-100.\n");
        out.push_str("# TYPE canaryd_rollout_weight gauge\n");
        for r in rollouts {
            let _ = writeln!(
                out,
                "canaryd_rollout_weight{} {}",
                render_labels(&vec![("rollout", r.name.clone())]),
                r.weight
            );
        }
        out.push_str("# HELP canaryd_rollout_phase The rollout's phase (1 for the current one).\n");
        out.push_str("# TYPE canaryd_rollout_phase gauge\n");
        for r in rollouts {
            for phase in PHASES {
                let labels = vec![("rollout", r.name.clone()), ("phase", phase.to_string())];
                let on = u8::from(r.phase == phase);
                let _ = writeln!(out, "canaryd_rollout_phase{} {on}", render_labels(&labels));
            }
        }
        out.push_str(
            "# HELP canaryd_rollout_stage The rollout's stage, from 1 (0 when at none).\n",
        );
        out.push_str("# TYPE canaryd_rollout_stage gauge\n");
        for r in rollouts {
            let _ = writeln!(
                out,
                "canaryd_rollout_stage{} {}",
                render_labels(&vec![("rollout", r.name.clone())]),
                r.stage.map_or(0, |s| s + 1)
            );
        }
        out
    }
}

fn own(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, (*v).to_string())).collect()
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn render_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            name: "we\"b".into(),
            phase: "progressing".into(),
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
        assert!(
            text.contains("canaryd_rollout_phase{rollout=\"we\\\"b\",phase=\"progressing\"} 1\n")
        );
        assert!(text.contains("canaryd_rollout_phase{rollout=\"we\\\"b\",phase=\"paused\"} 0\n"));
        assert!(text.contains("canaryd_rollout_stage{rollout=\"we\\\"b\"} 2\n"));
        assert_eq!(
            m.get(
                "canaryd_analyses_total",
                &[("rollout", "web"), ("verdict", "pass")]
            ),
            2.0
        );
    }
}
