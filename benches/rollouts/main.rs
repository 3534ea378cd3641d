//! Whole-rollout benchmark (issue 19 point 5): complete rollouts of the shipped plans decided by
//! `canaryd::replay` (the daemon's own state machine, analysis and judge on simulated time) over
//! a simulated service, healthy and degraded, reporting how often a healthy canary is rolled back
//! or paused, how often and how fast a degraded one is stopped, and how long a healthy one takes
//! to be promoted.
//!
//! Run: `cargo bench --bench rollouts --profile dev` (add `-- --trials N`, healthy rollouts per
//! cell, default 300, degraded ones a third of that; `--threads N`, default 2; `--fresh-canary`,
//! see below; `--only TEXT`, the plans whose label contains TEXT; `--timeline`, the decisions
//! and analyses of the first two healthy rollouts of each row on stderr). The figures are
//! deterministic (fixed seeds, independent of the thread count) and do not depend on the profile.
//!
//! - Plans: `rules/checkout-api.toml` (cron every 2 min, 7 stages, approval auto-granted),
//!   `rules/search-api.toml` (every minute, 3 stages), the latter with `every = "10s"`, and
//!   with its p50 latency check acting (a pause) at a 10% tolerance instead of recording at 15%,
//!   so that the moderate degradation is beyond a tolerance it acts on (issue 19 point 3).
//! - The service (`world.rs`): both versions share a load wave (±30%, 20-minute period, random
//!   phase). Latency quantiles are `p99 200 ms × fraction × load × exp(AR(1)) × spike`, one process
//!   per version (p95 at 0.6 and p50 at 0.25 of the p99), AR(1) with marginal σ 0.10 and lag-1
//!   autocorrelation ρ at a one-minute step, points every 30 s, a Pareto(1.5) spike with chance 5%
//!   a minute. Requests: the plan's implied rate (below) × load, split by the weight the rollout
//!   sets (at weight 0 the canary gets a mirror of the plan's first serving weight); errors per
//!   step ~ Binomial(requests, rate × a log-normal factor of mean 1 and σ 0 or 0.5 per step and
//!   version). Memory 1 GB ± 1% and a flat queue of 5 ± 1, healthy throughout. Both versions'
//!   data reach an hour back before the run (the canary deployed and mirrored before the run
//!   starts); with `--fresh-canary` the canary's data start with the run.
//! - Rates the rules imply: enough requests that every error-rate check reaches `min_samples` in
//!   its window at the plan's first serving weight at the load wave's trough (at least 600 rpm):
//!   28,600 rpm for checkout-api, 600 for search-api. Healthy error rates: 0.1% for checkout-api
//!   (half its 0.2% warning limit), 0.2% for search-api (a fifth of its 1% ceiling).
//! - Degradations of the canary: gross (error rate ×5 and latencies ×2) and moderate (×1.5 and
//!   +20%), from the run's start or from when the rollout first reaches its middle stage (25% in
//!   both plans). Times are from the degradation's onset; a rollout stopped before a mid-rollout
//!   onset is a false stop, not a detection.
//! - Modes: how rollouts are decided: the fixed-window judge, and the sequential judge of issue 19
//!   (relative and error-rate checks on their stage's evidence since its warm-up, anytime-valid
//!   bounds: a failure at the stage's share of α, a pass at the check's own), run on the same
//!   trials (the same seeds) in their own
//!   column groups.

mod world;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use canaryd::judge::{CheckKind, ThresholdTest};
use canaryd::replay::{Judging, Options, Replay, replay_observed};
use canaryd::rollout::{AuditAction, CheckVerdict};
use canaryd::rules::{KnownNames, Queries, RolloutRule, Schedule, parse_rule};
use canaryd::sim::Rng;
use chrono::{DateTime, Utc};

use world::{Degradation, Onset, Service, Setup, Shape, World};

/// 2026-03-01T10:00:00Z: every run starts here.
const START: i64 = 1_772_359_200;

/// How a rollout is decided. Each mode turns a shipped rule into the rule it runs.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Today's judge: every analysis judges its checks' fixed windows on its own.
    FixedWindow,
    /// Issue 19: relative and error-rate checks judged on their stage's evidence with
    /// anytime-valid bounds (`Judging::Staged`); the other checks on their windows.
    Sequential,
}

impl Mode {
    const ALL: [Mode; 2] = [Mode::FixedWindow, Mode::Sequential];

    fn label(self) -> &'static str {
        match self {
            Mode::FixedWindow => "fixed window",
            Mode::Sequential => "sequential",
        }
    }

    fn judging(self) -> Judging {
        match self {
            Mode::FixedWindow => Judging::FixedWindow,
            Mode::Sequential => Judging::Staged,
        }
    }

    fn rule(self, shipped: &RolloutRule) -> RolloutRule {
        match self {
            Mode::FixedWindow | Mode::Sequential => shipped.clone(),
        }
    }
}

struct Plan {
    label: &'static str,
    rule: RolloutRule,
    service: Service,
    /// The weight of the middle stage: a mid-rollout degradation starts there.
    mid_weight: u8,
}

/// A plan of the benchmark: a shipped rule file, maybe edited, and its healthy error rate.
struct PlanFile {
    label: &'static str,
    file: &'static str,
    /// Text replacements applied before parsing.
    edits: &'static [(&'static str, &'static str)],
    error_rate: f64,
}

const PLANS: [PlanFile; 4] = [
    PlanFile {
        label: "checkout-api",
        file: "rules/checkout-api.toml",
        edits: &[],
        error_rate: 0.001,
    },
    PlanFile {
        label: "search-api",
        file: "rules/search-api.toml",
        edits: &[],
        error_rate: 0.002,
    },
    PlanFile {
        label: "search-api, every 10s",
        file: "rules/search-api.toml",
        edits: &[("every = \"1m\"", "every = \"10s\"")],
        error_rate: 0.002,
    },
    // Issue 19 point 3, "a moderate regression within the stage": the shipped search-api rule
    // only records its latency check (a dry run at 15%) and allows 0.5 points of errors, so
    // neither flags the moderate degradation. Here the latency check acts at 10%.
    PlanFile {
        label: "search-api, p50 acting at 10%",
        file: "rules/search-api.toml",
        edits: &[
            ("tolerance = 0.15", "tolerance = 0.10"),
            ("action = \"notify\"", "action = \"pause\""),
            ("dry_run = true ", "dry_run = false "),
        ],
        error_rate: 0.002,
    },
];

const SHAPES: [Shape; 3] = [
    Shape {
        label: "ρ 0, binomial",
        rho: 0.0,
        error_sigma: 0.0,
    },
    Shape {
        label: "ρ 0.5, overdispersed",
        rho: 0.5,
        error_sigma: 0.5,
    },
    Shape {
        label: "ρ 0.8, overdispersed",
        rho: 0.8,
        error_sigma: 0.5,
    },
];

const GROSS: Degradation = Degradation {
    errors: 5.0,
    latency: 2.0,
};
const MODERATE: Degradation = Degradation {
    errors: 1.5,
    latency: 1.2,
};

/// The rate the plan's error checks need (see the module doc), rounded up to 100 rpm.
fn implied_rpm(rule: &RolloutRule, first_serving: u8) -> f64 {
    let trough = 0.7;
    let needed = rule
        .checks
        .iter()
        .filter(|c| matches!(c.queries, Queries::Counts { .. }))
        .map(|c| {
            let minutes = c.window.as_secs_f64() / 60.0;
            c.spec.min_samples as f64 / (minutes * f64::from(first_serving) / 100.0 * trough)
        })
        .fold(600.0, f64::max);
    (needed / 100.0).ceil() * 100.0
}

fn load_plans() -> Vec<Plan> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    PLANS
        .iter()
        .map(
            |&PlanFile {
                 label,
                 file,
                 edits,
                 error_rate,
             }| {
                let path = root.join(file);
                let mut text = std::fs::read_to_string(&path).unwrap();
                for (from, to) in edits {
                    assert!(text.contains(from), "{file} has no `{from}`");
                    text = text.replace(from, to);
                }
                let rule = parse_rule(&path, &text, &KnownNames::any()).unwrap();
                let stages = &rule.plan.stages;
                let first_serving = stages.iter().map(|s| s.weight).find(|&w| w > 0).unwrap();
                let service = Service {
                    rpm: implied_rpm(&rule, first_serving),
                    shadow_share: f64::from(first_serving),
                    error_rate,
                };
                let mid_weight = stages[stages.len() / 2].weight;
                Plan {
                    label,
                    rule,
                    service,
                    mid_weight,
                }
            },
        )
        .collect()
}

/// How one rollout ended, times in seconds from the run's start (promotion) or from the
/// degradation's onset (a stop).
#[derive(Debug, Clone)]
enum End {
    Promoted(f64),
    RolledBack(f64, Stop),
    Paused(f64, Stop),
    /// Rolled back or paused before a mid-rollout degradation began.
    StoppedBeforeOnset(Stop),
    /// Still progressing when the simulated span ended.
    Unfinished,
}

/// The checks behind a stop: those the decision names, marked when they were not failing but
/// without a verdict (a pause on missing or inconclusive evidence); a pause no check caused is
/// a stage that outlived its `max_duration`, named with the checks its last analysis did not
/// pass (the state's `holding`). With it, whether a failing check among them is a statistical
/// one (anything but an observed threshold), which the targets are about.
fn cause(rule: &RolloutRule, replayed: &Replay, checks: &[String]) -> Stop {
    if checks.is_empty() {
        let held = &replayed.state.holding;
        let why = match held.is_empty() {
            true => "stage timed out".into(),
            false => format!("stage timed out: {}", held.join(" + ")),
        };
        return Stop {
            why,
            statistical: false,
        };
    }
    let last = replayed.log.last().map(|l| &l.report.checks);
    let failed = |name: &&String| {
        last.is_some_and(|checks| {
            checks
                .iter()
                .any(|c| &c.check == *name && c.verdict == CheckVerdict::Fail)
        })
    };
    let statistical = |name: &&String| {
        rule.checks.iter().any(|c| {
            *c.spec.name == ***name
                && !matches!(
                    c.spec.kind,
                    CheckKind::Absolute {
                        test: ThresholdTest::Observed,
                        ..
                    } | CheckKind::ErrorRateAbsolute {
                        test: ThresholdTest::Observed,
                        ..
                    }
                )
        })
    };
    match checks.iter().any(|c| failed(&c)) {
        true => Stop {
            why: checks.join(" + "),
            statistical: checks.iter().filter(failed).any(|c| statistical(&c)),
        },
        false => Stop {
            why: format!("inconclusive: {}", checks.join(" + ")),
            statistical: false,
        },
    }
}

/// Why a rollout was stopped.
#[derive(Debug, Clone)]
struct Stop {
    why: String,
    /// A failing statistical check was among the causes.
    statistical: bool,
}

fn run_trial(
    plan: &Plan,
    mode: Mode,
    rule: &RolloutRule,
    setup: Setup,
    runtime: &tokio::runtime::Runtime,
    timeline: Option<String>,
) -> End {
    let world = Arc::new(World::new(rule, setup));
    let span: f64 = rule
        .plan
        .stages
        .iter()
        .map(|s| s.min_duration.as_secs_f64())
        .sum();
    let options = Options {
        start: DateTime::from_timestamp(START, 0).unwrap(),
        end: DateTime::from_timestamp(START + (2.0 * span) as i64 + 3600, 0).unwrap(),
        approve: true,
        judging: mode.judging(),
    };
    let observer = Arc::clone(&world);
    let mut on_weight = move |at, weight| observer.set_weight(at, weight);
    let source: Arc<dyn canaryd::source::MetricSource> = world.clone();
    let replayed = runtime
        .block_on(replay_observed(rule, source, &options, &mut on_weight))
        .unwrap_or_else(|e| panic!("{}: {e}", plan.label));
    let start = START as f64;
    if let Some(label) = timeline {
        print_timeline(&label, &replayed, start);
    }
    let find = |action: AuditAction| {
        let d = replayed
            .decisions
            .iter()
            .rev()
            .find(|d| d.action == action)?;
        Some((
            d.time.timestamp_millis() as f64 / 1e3,
            cause(rule, &replayed, &d.checks),
        ))
    };
    let stop = |at: f64, why: Stop, rolled_back: bool| match world.onset() {
        Some(onset) if at >= onset => match rolled_back {
            true => End::RolledBack(at - onset, why),
            false => End::Paused(at - onset, why),
        },
        Some(_) | None if setup.degradation.is_some() => End::StoppedBeforeOnset(why),
        _ => match rolled_back {
            true => End::RolledBack(at - start, why),
            false => End::Paused(at - start, why),
        },
    };
    match replayed.phase {
        "succeeded" => End::Promoted(find(AuditAction::Succeeded).unwrap().0 - start),
        "rolled-back" => {
            let (at, why) = find(AuditAction::RolledBack).unwrap();
            stop(at, why, true)
        }
        "paused" => {
            let (at, why) = find(AuditAction::Paused).unwrap();
            stop(at, why, false)
        }
        "progressing" => End::Unfinished,
        other => panic!("{}: a replay ended {other}", plan.label),
    }
}

/// `--timeline`: one trial's decisions and analyses on stderr, in minutes from the run's start,
/// each analysis with the checks that did not pass in it (what held its stage).
fn print_timeline(label: &str, replayed: &Replay, start: f64) {
    let minutes = |t: DateTime<Utc>| (t.timestamp() as f64 - start) / 60.0;
    let mut text = format!(
        "{label}: {} after {} analyses\n",
        replayed.phase, replayed.analyses
    );
    for d in &replayed.decisions {
        let stage = d.stage.as_deref().unwrap_or("-");
        let (at, action) = (minutes(d.time), &d.action);
        let _ = writeln!(text, "  {at:7.1} min  {action:?} {stage} ({}%)", d.weight);
    }
    for l in &replayed.log {
        let held: Vec<String> = l
            .report
            .checks
            .iter()
            .filter(|c| c.verdict != CheckVerdict::Pass)
            .map(|c| format!("{} ({:?})", c.check, c.verdict))
            .collect();
        let stage = l.stage.as_deref().unwrap_or("-");
        let at = minutes(l.time);
        let _ = writeln!(text, "    {at:7.1} {stage}: {}", held.join(", "));
    }
    eprint!("{text}");
}

/// One row of a table: a plan, a data shape and what happens to the canary.
#[derive(Clone, Copy)]
struct Cell {
    plan: usize,
    shape: usize,
    degradation: Option<(Degradation, Onset)>,
    trials: usize,
    /// Stable across modes, so modes are compared on the same data.
    seed: u64,
}

/// What happens to the canary: nothing, or each degradation from the start and from the
/// middle stage.
fn scenarios(plan: &Plan) -> [Option<(Degradation, Onset)>; 5] {
    let mid = Onset::AtWeight(plan.mid_weight);
    [
        None,
        Some((GROSS, Onset::Start)),
        Some((GROSS, mid)),
        Some((MODERATE, Onset::Start)),
        Some((MODERATE, mid)),
    ]
}

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1)?.parse().ok()
}

fn main() {
    let trials = arg("--trials").unwrap_or(300).max(1);
    let threads = arg("--threads").unwrap_or(2).max(1);
    let fresh_canary = std::env::args().any(|a| a == "--fresh-canary");
    let show_timeline = std::env::args().any(|a| a == "--timeline");
    let began = Instant::now();
    let plans = load_plans();
    let rules: Vec<Vec<RolloutRule>> = plans
        .iter()
        .map(|p| Mode::ALL.iter().map(|m| m.rule(&p.rule)).collect())
        .collect();
    let only: Option<String> = {
        let args: Vec<String> = std::env::args().collect();
        let at = args.iter().position(|a| a == "--only");
        at.and_then(|at| args.get(at + 1).cloned())
    };
    let mut cells = Vec::new();
    for (p, plan) in plans.iter().enumerate() {
        if only
            .as_ref()
            .is_some_and(|only| !plan.label.contains(only.as_str()))
        {
            continue;
        }
        for s in 0..SHAPES.len() {
            for (k, degradation) in scenarios(plan).into_iter().enumerate() {
                let seed =
                    Rng::new(0x0011_u64 << 48 | (p as u64) << 32 | (s as u64) << 16 | k as u64)
                        .next_u64();
                cells.push(Cell {
                    plan: p,
                    shape: s,
                    degradation,
                    trials: if degradation.is_none() {
                        trials
                    } else {
                        (trials / 3).max(1)
                    },
                    seed,
                });
            }
        }
    }
    // Every (cell, mode, trial), run by `threads` workers, each with its own runtime.
    let jobs: Vec<(usize, usize, usize)> = cells
        .iter()
        .enumerate()
        .flat_map(|(c, cell)| {
            (0..Mode::ALL.len()).flat_map(move |m| (0..cell.trials).map(move |t| (c, m, t)))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let ends: Mutex<Vec<Option<End>>> = Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(c, m, t)) = jobs.get(j) else { break };
                    let cell = cells[c];
                    let setup = Setup {
                        service: plans[cell.plan].service,
                        shape: SHAPES[cell.shape],
                        degradation: cell.degradation,
                        start: START as f64,
                        fresh_canary,
                        seed: Rng::new(cell.seed ^ t as u64).next_u64(),
                    };
                    let timeline =
                        (show_timeline && t < 2 && cell.degradation.is_none()).then(|| {
                            format!(
                                "{} | {} | {} | trial {t}",
                                plans[cell.plan].label,
                                SHAPES[cell.shape].label,
                                Mode::ALL[m].label()
                            )
                        });
                    let end = run_trial(
                        &plans[cell.plan],
                        Mode::ALL[m],
                        &rules[cell.plan][m],
                        setup,
                        &runtime,
                        timeline,
                    );
                    ends.lock().unwrap()[j] = Some(end);
                }
            });
        }
    });
    let ends: Vec<End> = ends
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let mut tallies: BTreeMap<(usize, usize), Tally> = BTreeMap::new();
    for (&(c, m, _), end) in jobs.iter().zip(ends) {
        tallies.entry((c, m)).or_default().add(end);
    }
    print_tables(
        &plans,
        &cells,
        &tallies,
        trials,
        threads,
        began.elapsed().as_secs_f64(),
    );
}

/// What the trials of one cell in one mode came to.
#[derive(Default)]
struct Tally {
    trials: usize,
    promoted: Vec<f64>,
    rolled_back: Vec<f64>,
    paused: Vec<f64>,
    before_onset: usize,
    unfinished: usize,
    /// Stops a failing statistical check caused.
    statistical: usize,
    causes: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, end: End) {
        self.trials += 1;
        let why = match end {
            End::Promoted(t) => {
                self.promoted.push(t);
                return;
            }
            End::Unfinished => {
                self.unfinished += 1;
                return;
            }
            End::RolledBack(t, stop) => {
                self.rolled_back.push(t);
                (format!("rollback: {}", stop.why), stop.statistical)
            }
            End::Paused(t, stop) => {
                self.paused.push(t);
                (format!("pause: {}", stop.why), stop.statistical)
            }
            End::StoppedBeforeOnset(stop) => {
                self.before_onset += 1;
                (format!("before onset: {}", stop.why), stop.statistical)
            }
        };
        let (why, statistical) = why;
        self.statistical += statistical as usize;
        *self.causes.entry(why).or_default() += 1;
    }

    /// The three most frequent causes, with their counts.
    fn top_causes(&self) -> String {
        let mut causes: Vec<(&String, &usize)> = self.causes.iter().collect();
        causes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = causes
            .iter()
            .take(6)
            .map(|(why, n)| format!("{why} ({n})"))
            .collect();
        match shown.is_empty() {
            true => "-".into(),
            false => shown.join("; "),
        }
    }
}

fn pct(k: usize, n: usize) -> String {
    format!("{:.1}%", 100.0 * k as f64 / n as f64)
}

/// Upper end of the 95% Wilson interval of `k` out of `n`.
fn wilson_upper(k: usize, n: usize) -> f64 {
    let (k, n, z) = (k as f64, n as f64, 1.959_963_984_540_054);
    let p = k / n;
    let centre = p + z * z / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    (centre + half) / (1.0 + z * z / n)
}

fn with_upper(k: usize, n: usize) -> String {
    format!("{} (≤ {:.1}%)", pct(k, n), 100.0 * wilson_upper(k, n))
}

/// Nearest-rank quantile of seconds, as minutes.
fn minutes(times: &[f64], q: f64) -> String {
    if times.is_empty() {
        return "-".into();
    }
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    format!("{:.1} min", sorted[rank - 1] / 60.0)
}

fn print_tables(
    plans: &[Plan],
    cells: &[Cell],
    tallies: &BTreeMap<(usize, usize), Tally>,
    trials: usize,
    threads: usize,
    seconds: f64,
) {
    println!(
        "{trials} healthy and {} degraded rollouts per row and mode; {threads} threads, {seconds:.0} s.",
        (trials / 3).max(1)
    );
    for (p, plan) in plans.iter().enumerate() {
        if !cells.iter().any(|c| c.plan == p) {
            continue;
        }
        println!(
            "- {}: {} stages, analyses {}, {:.0} rpm, healthy error rate {:.1}%, shadow mirror {:.0}%, mid-rollout onset at {}%",
            plan.label,
            plan.rule.plan.stages.len(),
            match &plan.rule.schedule {
                Schedule::Cron { expr, .. } => format!("at `{expr}`"),
                Schedule::Every(every) => format!("every {}s", every.as_secs()),
            },
            plan.service.rpm,
            100.0 * plan.service.error_rate,
            plan.service.shadow_share,
            plan.mid_weight
        );
    }
    println!();
    println!("Healthy canaries:");
    println!();
    let mut head = String::from("| plan | data |");
    let mut rule = String::from("|---|---|");
    for mode in Mode::ALL {
        let m = mode.label();
        head.push_str(&format!(
            " {m}: false rollback | {m}: false pause | {m}: by a statistical check | {m}: promoted, median time | {m}: unfinished | {m}: causes |"
        ));
        rule.push_str("---|---|---|---|---|---|");
    }
    println!("{head}\n{rule}");
    for (c, cell) in cells.iter().enumerate() {
        if cell.degradation.is_some() {
            continue;
        }
        let mut row = format!(
            "| {} | {} |",
            plans[cell.plan].label, SHAPES[cell.shape].label
        );
        for m in 0..Mode::ALL.len() {
            let t = &tallies[&(c, m)];
            row.push_str(&format!(
                " {} | {} | {} | {} ({}) | {} | {} |",
                with_upper(t.rolled_back.len(), t.trials),
                with_upper(t.paused.len(), t.trials),
                with_upper(t.statistical, t.trials),
                minutes(&t.promoted, 0.5),
                pct(t.promoted.len(), t.trials),
                pct(t.unfinished, t.trials),
                t.top_causes()
            ));
        }
        println!("{row}");
    }
    println!();
    println!("Degraded canaries (times from the degradation's onset):");
    println!();
    let mut head = String::from("| plan | data | degradation | onset |");
    let mut rule = String::from("|---|---|---|---|");
    for mode in Mode::ALL {
        let m = mode.label();
        head.push_str(&format!(
            " {m}: detected (rolled back + paused) | {m}: to rollback, median / p95 | {m}: to first stop, median / p95 | {m}: promoted | {m}: stopped before onset | {m}: causes |"
        ));
        rule.push_str("---|---|---|---|---|---|");
    }
    println!("{head}\n{rule}");
    for (c, cell) in cells.iter().enumerate() {
        let Some((degradation, onset)) = cell.degradation else {
            continue;
        };
        let mut row = format!(
            "| {} | {} | {} | {} |",
            plans[cell.plan].label,
            SHAPES[cell.shape].label,
            match degradation == GROSS {
                true => "gross: errors ×5, latency ×2",
                false => "moderate: errors ×1.5, latency +20%",
            },
            match onset {
                Onset::Start => "start".to_string(),
                Onset::AtWeight(w) => format!("at {w}%"),
            }
        );
        for m in 0..Mode::ALL.len() {
            let t = &tallies[&(c, m)];
            let stops: Vec<f64> = t.rolled_back.iter().chain(&t.paused).copied().collect();
            row.push_str(&format!(
                " {} ({} + {}) | {} / {} | {} / {} | {} | {} | {} |",
                pct(stops.len(), t.trials),
                pct(t.rolled_back.len(), t.trials),
                pct(t.paused.len(), t.trials),
                minutes(&t.rolled_back, 0.5),
                minutes(&t.rolled_back, 0.95),
                minutes(&stops, 0.5),
                minutes(&stops, 0.95),
                pct(t.promoted.len(), t.trials),
                pct(t.before_onset, t.trials),
                t.top_causes()
            ));
        }
        println!("{row}");
    }
}
