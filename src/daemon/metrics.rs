//! The daemon's own metrics, rendered in the Prometheus text format for `/metrics`.
//!
//! A small registry of counters, gauges and histograms keyed by name and labels (a rollout's
//! series held per rollout, `per_rollout`, and the per-check verdict counts in a compact form of
//! their own, `verdicts`); rollout weights and phases are
//! read from the rollouts' published status at render time. It owns the metric
//! names and their help texts, and [`Timed`], the source wrapper that measures query latency;
//! nothing else.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::status::RolloutStatus;
use per_rollout::PerRollout;
use verdicts::Verdicts;

mod per_rollout;
mod verdicts;
use std::future::Future;
use std::pin::Pin;

use crate::source::{BatchFuture, MetricSource, QueryFuture};

type Labels = Vec<(&'static str, String)>;

/// Upper bounds (seconds) of the query latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bucket counts (cumulative at render), sum and count of one histogram series.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Counters, gauges and histograms the daemon updates as it works. Clones share the registry.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    series: Arc<Mutex<BTreeMap<(&'static str, Labels), f64>>>,
    histograms: Arc<Mutex<BTreeMap<(&'static str, Labels), Histogram>>>,
    /// The series whose first label is `rollout`, but the verdicts'.
    rollouts: Arc<Mutex<PerRollout>>,
    /// `canaryd_check_verdicts_total`, the one family with a series per rollout and check.
    verdicts: Arc<Mutex<Verdicts>>,
}

/// Help texts of the histograms.
const HISTOGRAMS: &[(&str, &str)] = &[(
    "canaryd_backend_query_duration_seconds",
    "Time metric backend requests took (answers and errors), by source; the queries of one analysis that share a window and step are one request.",
)];

/// Help texts and types of the metrics the daemon updates.
const HELP: &[(&str, &str, &str)] = &[
    (
        "canaryd_analyses_total",
        "counter",
        "Analyses judged and recorded in the state database, by rollout and verdict (pass, marginal, fail, inconclusive).",
    ),
    (
        "canaryd_analyses_unrecorded_total",
        "counter",
        "Analyses judged but not recorded, so not acted on: the state database failed to write them, by rollout.",
    ),
    (
        "canaryd_check_verdicts_total",
        "counter",
        "Verdicts of each check in recorded analyses, by rollout, check and verdict (pass, fail, inconclusive).",
    ),
    (
        "canaryd_rollout_inconclusive_streak",
        "gauge",
        "Inconclusive or marginal analyses in a row in the rollout's current stage (it cannot advance on them).",
    ),
    (
        "canaryd_rollout_last_conclusive_analysis_timestamp_seconds",
        "gauge",
        "Unix time of the rollout's last recorded analysis that passed or failed (with data); no series before its first.",
    ),
    (
        "canaryd_rollout_backend_errors",
        "gauge",
        "Analyses in a row that failed on a metric backend error; the rollout holds while it is above 0.",
    ),
    (
        "canaryd_backend_up",
        "gauge",
        "Whether the metric backend answered the last analysis that asked it (1) or failed (0), by source.",
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
        "Rollout tasks restarted after a failure (their state could not be loaded) or a panic.",
    ),
    (
        "canaryd_config_last_reload_successful",
        "gauge",
        "Whether every rule file loaded at the last reload (1), or some file is broken or the reload failed (0).",
    ),
    (
        "canaryd_config_last_reload_timestamp_seconds",
        "gauge",
        "Unix time of the last rule reload that put rules in force (every file that loads).",
    ),
    (
        "canaryd_rule_file_problems",
        "gauge",
        "Problems of a rule file that does not load, by file; its last good rule, if any, stays in force. No series while the file loads.",
    ),
    (
        "canaryd_rule_files_broken",
        "gauge",
        "Rule files that do not load.",
    ),
    (
        "canaryd_emergency_stop_active",
        "gauge",
        "Whether an emergency stop is in force.",
    ),
    (
        "canaryd_state_database_healthy",
        "gauge",
        "Whether the state database is the one opened and writable (1), or deleted, replaced or failing (0): canaryd then stops acting.",
    ),
    (
        "canaryd_store_write_errors_total",
        "counter",
        "Writes to the state database that failed, by operation (step: a rollout's decision; prune).",
    ),
    (
        "canaryd_store_bytes",
        "gauge",
        "Size of the state database file (page count times page size, free pages included).",
    ),
    (
        "canaryd_store_free_bytes",
        "gauge",
        "Free pages of the state database not yet handed back to the file system, in bytes.",
    ),
    (
        "canaryd_store_pruned_analyses_total",
        "counter",
        "Analyses dropped by retention ([retention] in the config).",
    ),
    (
        "canaryd_store_last_prune_timestamp_seconds",
        "gauge",
        "Unix time of the last successful prune of the history.",
    ),
    (
        "canaryd_rules_loaded",
        "gauge",
        "Rollout rules currently loaded.",
    ),
    (
        "canaryd_notifications_pending",
        "gauge",
        "Notifications in the outbox waiting to be sent (or retried).",
    ),
    (
        "canaryd_notifications_sent_total",
        "counter",
        "Notifications delivered, from the outbox.",
    ),
    (
        "canaryd_notifications_failed_total",
        "counter",
        "Notifications given up on (a permanent error or too many attempts), from the outbox.",
    ),
    (
        "canaryd_notifications_superseded_total",
        "counter",
        "Triggers never sent because their incident was resolved first, from the outbox.",
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

    fn rollouts(&self) -> std::sync::MutexGuard<'_, PerRollout> {
        self.rollouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn verdicts(&self) -> std::sync::MutexGuard<'_, Verdicts> {
        self.verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds one to a counter.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        if let (verdicts::NAME, [("rollout", r), ("check", c), ("verdict", v)]) = (name, labels)
            && self.verdicts().inc(r, c, v)
        {
            return;
        }
        self.add(name, labels, 1.0);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        if let [("rollout", rollout), rest @ ..] = labels {
            *self.rollouts().entry(name, rollout, rest) = value;
            return;
        }
        self.lock().insert((name, own(labels)), value);
    }

    /// Adds `value` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        if let [("rollout", rollout), rest @ ..] = labels {
            *self.rollouts().entry(name, rollout, rest) += value;
            return;
        }
        let key = (name, own(labels));
        *self.lock().entry(key).or_insert(0.0) += value;
    }

    /// Drops every series of a rollout no longer loaded, and of a check its rule no longer has:
    /// `checks(rollout)` is the rule's checks, `None` when the rollout is gone. Label values come
    /// from the rules only, so the series stay as many as the rules say.
    pub fn retain_rollouts(&self, checks: impl Fn(&str) -> Option<Vec<String>>) {
        self.verdicts().retain(&checks);
        self.rollouts().retain(&checks);
        self.lock().retain(|(_, labels), _| {
            let label = |key: &str| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
            let Some(rollout) = label("rollout") else {
                return true;
            };
            match (checks(rollout), label("check")) {
                (None, _) => false,
                (Some(checks), Some(check)) => checks.contains(check),
                (Some(_), None) => true,
            }
        });
    }

    /// Drops a series (a broken rule file's, once it loads or is gone).
    pub fn remove(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        if let [("rollout", rollout), rest @ ..] = labels {
            self.rollouts().remove(name, rollout, rest);
            return;
        }
        self.lock().remove(&(name, own(labels)));
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let mut all = self
            .histograms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = all.entry((name, own(labels))).or_default();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| value <= *le) {
            h.buckets[i] += 1;
        }
        h.sum += value;
        h.count += 1;
    }

    /// A series' current value (0 when never touched), for tests and status lines.
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &str)]) -> f64 {
        if let (verdicts::NAME, [("rollout", r), ("check", c), ("verdict", v)]) = (name, labels)
            && let Some(count) = self.verdicts().get(r, c, v)
        {
            return count;
        }
        if let [("rollout", rollout), rest @ ..] = labels {
            return self.rollouts().get(name, rollout, rest).unwrap_or(0.0);
        }
        self.lock()
            .get(&(name, own(labels)))
            .copied()
            .unwrap_or(0.0)
    }

    /// Everything, in the text exposition format, in one string (see [`Pages`] for `/metrics`).
    pub fn render(&self, rollouts: &[RolloutStatus]) -> String {
        let by_name: BTreeMap<String, RolloutStatus> = rollouts
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        let mut pages = Pages::new(self.clone(), move |after, n| {
            statuses_after(&by_name, after, n)
        });
        let mut out = String::new();
        while let Some(page) = pages.next_page() {
            out.push_str(&page);
        }
        out
    }
}

/// The rollouts after `after` (all from the first when `None`), at most `n`, in name order.
pub fn statuses_after(
    by_name: &BTreeMap<String, RolloutStatus>,
    after: Option<&str>,
    n: usize,
) -> Vec<RolloutStatus> {
    let from = after.map_or(Bound::Unbounded, Bound::Excluded);
    by_name
        .range::<str, _>((from, Bound::Unbounded))
        .take(n)
        .map(|(_, r)| r.clone())
        .collect()
}

/// Lines of one page: about 64 kB of text.
const PAGE_LINES: usize = 1024;

/// Where a [`Pages`] is: which family, and the last series or rollout written of it.
#[derive(Debug)]
enum Part {
    /// The counters and gauges of `HELP[i]`, after these labels.
    Series(usize, Option<Labels>),
    /// The series of `HELP[i]` held per rollout: its lines after this rollout's.
    PerRollout(usize, Option<String>),
    /// `HELP[i]` is the check verdicts' family: its lines after this rollout's.
    Verdicts(usize, Option<String>),
    Histograms,
    /// A per-rollout family (`ROLLOUT_FAMILIES[i]`), after this rollout.
    Rollouts(usize, Option<String>),
    Done,
}

/// A gauge family read from the rollouts' published statuses.
struct RolloutFamily {
    name: &'static str,
    help: &'static str,
    /// Lines written per rollout.
    lines: usize,
    /// One rollout's lines of the family.
    write: fn(&mut String, &str, &RolloutStatus),
}

const ROLLOUT_FAMILIES: [RolloutFamily; 3] = [
    RolloutFamily {
        name: "canaryd_rollout_weight",
        help: "The canary's share of traffic, 0-100.",
        lines: 1,
        write: |out, family, r| {
            let labels = vec![("rollout", r.name.clone())];
            let _ = writeln!(out, "{family}{} {}", render_labels(&labels), r.weight);
        },
    },
    RolloutFamily {
        name: "canaryd_rollout_phase",
        help: "The rollout's phase (1 for the current one).",
        lines: PHASES.len(),
        write: |out, family, r| {
            for phase in PHASES {
                let labels = vec![("rollout", r.name.clone()), ("phase", phase.to_string())];
                let on = u8::from(r.phase == phase);
                let _ = writeln!(out, "{family}{} {on}", render_labels(&labels));
            }
        },
    },
    RolloutFamily {
        name: "canaryd_rollout_stage",
        help: "The rollout's stage, from 1 (0 when at none).",
        lines: 1,
        write: |out, family, r| {
            let labels = vec![("rollout", r.name.clone())];
            let stage = r.stage.map_or(0, |s| s + 1);
            let _ = writeln!(out, "{family}{} {stage}", render_labels(&labels));
        },
    },
];

/// The rollouts after a name, at most a number of them, in name order.
type StatusSource = dyn Fn(Option<&str>, usize) -> Vec<RolloutStatus> + Send + Sync;

/// `/metrics`, a page at a time, so a scrape of a daemon with 10,000 rollouts (6 MB of text)
/// holds one page of it instead of the whole text and a copy of every series: the registry
/// and the statuses are locked for one page each, never across pages. A scrape therefore reads
/// a counter moving meanwhile at its later value, as it would a moment later anyway.
pub struct Pages {
    metrics: Metrics,
    statuses: Box<StatusSource>,
    part: Part,
}

impl Pages {
    /// Pages of `metrics`, with the rollouts' statuses from `statuses(after, n)`.
    pub fn new(
        metrics: Metrics,
        statuses: impl Fn(Option<&str>, usize) -> Vec<RolloutStatus> + Send + Sync + 'static,
    ) -> Self {
        Pages {
            metrics,
            statuses: Box::new(statuses),
            part: Part::Series(0, None),
        }
    }

    /// The next page of text; `None` after the last.
    pub fn next_page(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut lines = 0;
        while lines < PAGE_LINES {
            match std::mem::replace(&mut self.part, Part::Done) {
                Part::Done => break,
                Part::Series(i, after) => {
                    let Some((name, kind, help)) = HELP.get(i) else {
                        self.part = Part::Histograms;
                        continue;
                    };
                    if after.is_none() {
                        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                    }
                    if *name == verdicts::NAME {
                        self.part = Part::Verdicts(i, None);
                        continue;
                    }
                    let from = match after {
                        Some(labels) => Bound::Excluded((*name, labels)),
                        None => Bound::Included((*name, Vec::new())),
                    };
                    let series = self.metrics.lock();
                    let mut last = None;
                    for ((n, labels), value) in series.range((from, Bound::Unbounded)) {
                        if n != name || lines >= PAGE_LINES {
                            break;
                        }
                        let _ = writeln!(out, "{name}{} {}", render_labels(labels), number(*value));
                        lines += 1;
                        last = Some(labels);
                    }
                    self.part = match last {
                        Some(labels) if lines >= PAGE_LINES => {
                            Part::Series(i, Some(labels.clone()))
                        }
                        _ => Part::PerRollout(i, None),
                    };
                }
                Part::PerRollout(i, after) => {
                    let (written, stopped) = self.metrics.rollouts().render(
                        &mut out,
                        HELP[i].0,
                        after.as_deref(),
                        PAGE_LINES - lines,
                    );
                    lines += written;
                    self.part = match stopped {
                        Some(rollout) => Part::PerRollout(i, Some(rollout)),
                        None => Part::Series(i + 1, None),
                    };
                }
                Part::Verdicts(i, after) => {
                    let verdicts = self.metrics.verdicts();
                    let (written, stopped) =
                        verdicts.render(&mut out, after.as_deref(), PAGE_LINES - lines);
                    lines += written;
                    self.part = match stopped {
                        Some(rollout) => Part::Verdicts(i, Some(rollout)),
                        None => Part::Series(i + 1, None),
                    };
                }
                Part::Histograms => {
                    lines += self.metrics.render_histograms(&mut out);
                    self.part = Part::Rollouts(0, None);
                }
                Part::Rollouts(i, after) => {
                    let Some(family) = ROLLOUT_FAMILIES.get(i) else {
                        self.part = Part::Done;
                        break;
                    };
                    let name = family.name;
                    if after.is_none() {
                        let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} gauge", family.help);
                    }
                    let batch = (self.statuses)(
                        after.as_deref(),
                        (PAGE_LINES - lines).div_ceil(family.lines),
                    );
                    for r in &batch {
                        (family.write)(&mut out, name, r);
                        lines += family.lines;
                    }
                    self.part = match batch.last() {
                        Some(r) if lines >= PAGE_LINES => Part::Rollouts(i, Some(r.name.clone())),
                        _ => Part::Rollouts(i + 1, None),
                    };
                }
            }
        }
        (!out.is_empty()).then_some(out)
    }
}

impl Metrics {
    /// The histograms (a few series: one per metric source); returns the lines written.
    fn render_histograms(&self, out: &mut String) -> usize {
        let histograms = self
            .histograms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut lines = 0;
        for (name, help) in HISTOGRAMS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for ((n, labels), h) in histograms.iter() {
                if n != name {
                    continue;
                }
                let mut cumulative = 0;
                for (le, count) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                    cumulative += count;
                    let mut with_le = labels.clone();
                    with_le.push(("le", le.to_string()));
                    let _ = writeln!(out, "{name}_bucket{} {cumulative}", render_labels(&with_le));
                }
                let mut inf = labels.clone();
                inf.push(("le", "+Inf".to_string()));
                let _ = writeln!(out, "{name}_bucket{} {}", render_labels(&inf), h.count);
                let _ = writeln!(out, "{name}_sum{} {}", render_labels(labels), h.sum);
                let _ = writeln!(out, "{name}_count{} {}", render_labels(labels), h.count);
                lines += LATENCY_BUCKETS.len() + 3;
            }
        }
        lines
    }
}

/// A metric source that records each query's duration in
/// `canaryd_backend_query_duration_seconds{source=...}`.
pub struct Timed {
    inner: Arc<dyn MetricSource>,
    metrics: Metrics,
}

impl Timed {
    pub fn wrap(inner: Arc<dyn MetricSource>, metrics: &Metrics) -> Arc<dyn MetricSource> {
        Arc::new(Timed {
            inner,
            metrics: metrics.clone(),
        })
    }

    fn timed<'a, T: Send + 'a>(
        &'a self,
        query: Pin<Box<dyn Future<Output = T> + Send + 'a>>,
    ) -> Pin<Box<dyn Future<Output = T> + Send + 'a>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            let answer = query.await;
            self.metrics.observe(
                "canaryd_backend_query_duration_seconds",
                &[("source", self.inner.name())],
                started.elapsed().as_secs_f64(),
            );
            answer
        })
    }
}

impl MetricSource for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn query_range<'a>(
        &'a self,
        query: &'a str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> QueryFuture<'a> {
        self.timed(self.inner.query_range(query, start, end, step))
    }

    fn query_instant<'a>(&'a self, query: &'a str, at: DateTime<Utc>) -> QueryFuture<'a> {
        self.timed(self.inner.query_instant(query, at))
    }

    fn query_range_many<'a>(
        &'a self,
        queries: &'a [String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> BatchFuture<'a> {
        self.timed(self.inner.query_range_many(queries, start, end, step))
    }
}

/// Writes the lines of whole rollouts of `by_rollout` after `after`, each by `write` (which
/// returns the lines it wrote), until at least `max` lines are written; returns the lines
/// written and, when it stopped before the end, the last rollout written. The compact
/// per-rollout families page this way.
fn page_rollouts<T>(
    by_rollout: &BTreeMap<Box<str>, T>,
    out: &mut String,
    after: Option<&str>,
    max: usize,
    mut write: impl FnMut(&mut String, &str, &T) -> usize,
) -> (usize, Option<String>) {
    let from = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut lines = 0;
    let mut last: Option<&str> = None;
    for (rollout, of_rollout) in by_rollout.range::<str, _>((from, Bound::Unbounded)) {
        if lines >= max {
            return (lines, last.map(str::to_string));
        }
        let written = write(out, rollout, of_rollout);
        if written > 0 {
            lines += written;
            last = Some(rollout);
        }
    }
    (lines, None)
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

fn render_labels(labels: &[(&'static str, String)]) -> String {
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
mod tests;
