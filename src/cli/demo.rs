//! `canaryd demo`: the whole daemon on a simulated service, in under a minute, with nothing to
//! install or configure.
//!
//! It owns the demo's script: a temporary directory with a generated config and the two rule
//! files embedded in the binary (`demo_rules/`), two simulated services ([`crate::sim`]) whose
//! traffic is split by the daemon's own assignment endpoint, the in-memory metric source injected
//! in place of Prometheus, the regression it provokes (the search canary starts failing once it
//! has 25% of traffic), live progress (bars redrawn in place on a terminal, plain lines
//! otherwise), and the summary read back from the SQLite audit trail. It decides nothing about
//! the rollouts: the daemon does, exactly as `canaryd serve` would.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::daemon::{self, Options};
use crate::rollout::RolloutState;
use crate::sim::{self, Behaviour, Profile, Simulator, Split, Version};
use crate::source::MetricSource;
use crate::store::Store;

/// Exit code when the demo could not run or its rollouts did not end as scripted.
pub const FAILURE: u8 = 1;

/// The rule files of the demo, embedded in the binary.
pub const RULES: [(&str, &str); 2] = [
    (
        "checkout-api.toml",
        include_str!("demo_rules/checkout-api.toml"),
    ),
    (
        "search-api.toml",
        include_str!("demo_rules/search-api.toml"),
    ),
];
/// The healthy rollout, and the one whose canary regresses.
pub const HEALTHY: &str = "checkout-api";
pub const REGRESSING: &str = "search-api";
/// The regressing canary starts failing once it has at least this weight.
const REGRESS_AT: u8 = 25;
/// How the regressing canary fails: 30× the profile's 0.2% error rate, 6%.
const REGRESSION: Behaviour = Behaviour::Erroring { multiplier: 30.0 };
/// How often the progress display is refreshed.
const REFRESH: Duration = Duration::from_millis(250);
/// Width of a progress bar, in characters.
const BAR: usize = 24;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Synthetic requests per second sent to each simulated service.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(50..=5000))]
    pub rate: u32,
    /// Give up (exit 1) if the rollouts have not finished after this many seconds.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(5..=600))]
    pub timeout: u64,
    /// Also print the daemon's own logs (to stderr).
    #[arg(long)]
    pub verbose: bool,
    /// After the summary, keep the daemon and its status page up until Ctrl-C.
    #[arg(long)]
    pub stay: bool,
}

/// The demo's daemon config: everything in `dir`, the simulator as source `sim` (the Prometheus
/// entry only names it: the demo injects the in-memory source under that name).
fn config_text(dir: &Path) -> String {
    format!(
        "# Written by `canaryd demo`.\n\
         state_dir = {state:?}\n\
         rules_dir = {rules:?}\n\n\
         [server]\nlisten = \"127.0.0.1:0\"\n\n\
         [sources.sim]\nkind = \"prometheus\"\n\
         url = \"http://127.0.0.1:9\"  # replaced in-process by the simulator's own source\n\n\
         [actuators.builtin]\nkind = \"builtin\"\n",
        state = dir.join("state").display().to_string(),
        rules = dir.join("rules").display().to_string(),
    )
}

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("canaryd-demo-{}-{nanos}", std::process::id()))
}

/// Write the config and the rule files into `dir`; the config's path.
fn prepare(dir: &Path) -> Result<PathBuf, String> {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules)
        .map_err(|e| format!("cannot create {}: {e}", rules.display()))?;
    for (file, text) in RULES {
        let path = rules.join(file);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let path = dir.join("canaryd.toml");
    std::fs::write(&path, config_text(dir))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

pub fn run(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("canaryd demo: cannot start the async runtime: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    match runtime.block_on(demo(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(FAILURE),
        Err(e) => {
            eprintln!("canaryd demo: {e}");
            ExitCode::from(FAILURE)
        }
    }
}

/// One rollout as the display shows it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    phase: String,
    weight: u8,
    stage: String,
}

impl Row {
    fn finished(&self) -> bool {
        !matches!(
            self.phase.as_str(),
            "pending" | "progressing" | "waiting-approval"
        )
    }
}

fn row(name: &str, state: Option<&RolloutState>, stages: &[(String, u32)]) -> Row {
    let Some(state) = state else {
        return Row {
            name: name.to_string(),
            phase: "pending".into(),
            weight: 0,
            stage: String::new(),
        };
    };
    let stage = match state
        .phase
        .stage()
        .and_then(|s| stages.get(s).map(|st| (s, st)))
    {
        Some((i, (stage_name, required))) => format!(
            "stage {}/{} {stage_name:>4}  passes {}/{required}",
            i + 1,
            stages.len(),
            state.passes
        ),
        None => String::new(),
    };
    Row {
        name: name.to_string(),
        phase: daemon::status::phase_name(&state.phase).to_string(),
        weight: state.weight,
        stage,
    }
}

fn bar(row: &Row) -> String {
    let filled = (usize::from(row.weight.min(100)) * BAR).div_ceil(100);
    format!(
        "  {:<13} [{}{}] {:>3}%  {:<12} {}",
        row.name,
        "#".repeat(filled),
        "-".repeat(BAR - filled),
        row.weight,
        row.phase,
        row.stage
    )
}

/// The terminal display: bars redrawn in place on a TTY, one line per change otherwise.
struct Display {
    tty: bool,
    drawn: usize,
    started: Instant,
}

impl Display {
    fn event(&mut self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.tty {
            self.erase(&mut out);
        }
        let _ = writeln!(
            out,
            "[{:>5.1}s] {text}",
            self.started.elapsed().as_secs_f64()
        );
        let _ = out.flush();
    }

    fn erase(&mut self, out: &mut impl Write) {
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
            for _ in 0..self.drawn {
                let _ = writeln!(out, "\x1b[2K");
            }
            let _ = write!(out, "\x1b[{}A", self.drawn);
            self.drawn = 0;
        }
    }

    fn bars(&mut self, rows: &[Row]) {
        if !self.tty {
            return;
        }
        let mut out = std::io::stdout().lock();
        self.erase(&mut out);
        for r in rows {
            let _ = writeln!(out, "\x1b[2K{}", bar(r));
        }
        self.drawn = rows.len();
        let _ = out.flush();
    }
}

async fn demo(args: DemoArgs) -> Result<bool, String> {
    let started = Instant::now();
    if args.verbose {
        crate::logging::init(&crate::config::LogConfig::default()).map_err(|e| e.to_string())?;
    }
    let dir = temp_dir();
    let config_path = prepare(&dir)?;
    let config = crate::config::parse(&config_path, &config_text(&dir), &HashMap::new())
        .map_err(|e| e.to_string())?;
    let rules: BTreeMap<String, Vec<(String, u32)>> = daemon::load_rules(&config)
        .map_err(|problems| {
            format!(
                "the embedded demo rules are not valid:\n{}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })?
        .rules
        .iter()
        .map(|(name, r)| {
            let stages = r
                .plan
                .stages
                .iter()
                .map(|s| (s.name.clone(), s.required_passes))
                .collect();
            (name.clone(), stages)
        })
        .collect();

    let checkout = Arc::new(Simulator::new("checkout", Profile::default(), 1));
    let search = Arc::new(Simulator::new("search", Profile::default(), 2));
    let source: Arc<dyn MetricSource> = Arc::new(sim::sim_source(
        "sim",
        &[Arc::clone(&checkout), Arc::clone(&search)],
    ));
    let shutdown = CancellationToken::new();
    let (_reload_tx, reload_rx) = mpsc::channel(1);
    let (addr_tx, addr_rx) = oneshot::channel();
    let options = Options {
        emergency_stop_at_start: false,
        on_listen: Some(addr_tx),
        ..Options::default()
    };
    let mut running = tokio::spawn(daemon::run_with_sources(
        config,
        options,
        super::serve::routes,
        BTreeMap::from([("sim".to_string(), source)]),
        shutdown.clone(),
        reload_rx,
    ));
    let addr = tokio::select! {
        addr = addr_rx => addr.ok(),
        ended = &mut running => {
            return Err(match ended {
                Ok(Err(e)) => format!("the daemon did not start: {e}"),
                other => format!("the daemon did not start: {other:?}"),
            });
        }
    }
    .ok_or("the daemon did not say where it listens")?;
    let base = format!("http://{addr}");

    // The regression starts with the first request served at 25%, not when this loop notices.
    search.change_canary_at(REGRESS_AT, REGRESSION);
    for (sim, rollout, seed) in [(&checkout, HEALTHY, 11), (&search, REGRESSING, 12)] {
        let split = Split::http(base.clone(), rollout);
        tokio::spawn(sim::drive(
            Arc::clone(sim),
            split,
            args.rate,
            seed,
            shutdown.clone(),
        ));
    }

    let store = Store::open(&dir.join("state")).map_err(|e| e.to_string())?;
    println!("canaryd demo: two canary rollouts on a simulated service, on compressed time.");
    println!(
        "  {HEALTHY}: a healthy canary; {REGRESSING}: its canary starts failing at {REGRESS_AT}%."
    );
    println!(
        "  {} requests/s per service, split by canaryd's assignment endpoint.",
        args.rate
    );
    println!("  Status page: {base}/   (API: {base}/v1/rollouts)");
    println!("  State and rules: {}", dir.display());
    println!();

    let mut display = Display {
        tty: std::io::stdout().is_terminal(),
        drawn: 0,
        started,
    };
    let mut last_audit: BTreeMap<String, i64> = BTreeMap::new();
    let mut regressed = false;
    let deadline = started + Duration::from_secs(args.timeout);
    let mut ticker = tokio::time::interval(REFRESH);
    let rows = loop {
        ticker.tick().await;
        let states: BTreeMap<String, RolloutState> = store
            .call(|s| s.rollouts::<RolloutState>())
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| (s.name, s.state))
            .collect();
        for name in rules.keys() {
            let key = name.clone();
            let page = store
                .call(move |s| s.audit_page(&key, None, 50))
                .await
                .map_err(|e| e.to_string())?;
            let seen = last_audit.get(name).copied().unwrap_or(0);
            let mut fresh: Vec<_> = page.items.into_iter().filter(|a| a.id > seen).collect();
            fresh.sort_by_key(|a| a.id);
            for a in fresh {
                last_audit.insert(name.clone(), a.id);
                if a.action == "analysis-recorded" {
                    continue;
                }
                let weights = match (a.previous_weight, a.new_weight) {
                    (Some(p), Some(n)) if p != n => format!(" {p}% → {n}%"),
                    _ => String::new(),
                };
                display.event(&format!("{name}: {}{weights}: {}", a.action, a.reason));
            }
        }
        let rows: Vec<Row> = rules
            .iter()
            .map(|(name, stages)| row(name, states.get(name), stages))
            .collect();
        if !regressed && search.behaviour(Version::Canary) == REGRESSION {
            regressed = true;
            display.event(&format!(
                "{REGRESSING}: (simulated) the canary now fails 6% of its requests, the baseline 0.2%."
            ));
        }
        display.bars(&rows);
        if rows.iter().all(Row::finished) || Instant::now() >= deadline {
            break rows;
        }
    };

    let elapsed = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out);
    let _ = writeln!(out, "Summary ({elapsed:.1} s):");
    let mut as_scripted = true;
    for r in &rows {
        let expected = if r.name == HEALTHY {
            "succeeded"
        } else {
            "rolled-back"
        };
        let outcome = match r.phase.as_str() {
            "succeeded" => "Succeeded: the canary passed every stage and serves 100%".to_string(),
            "rolled-back" => format!(
                "RolledBack: the canary was taken out of traffic ({}%)",
                r.weight
            ),
            other => format!(
                "did not finish: {other} at {}% after {elapsed:.0} s",
                r.weight
            ),
        };
        as_scripted &= r.phase == expected;
        let _ = writeln!(out, "  {:<13} {outcome}", r.name);
    }
    let _ = writeln!(out, "Audit trail (SQLite): {}", store.path().display());
    let names: Vec<String> = rules.keys().cloned().collect();
    let _ = writeln!(out, "{}", history_hint(&base, &names, args.stay));
    if !as_scripted {
        let _ = writeln!(
            out,
            "The rollouts did not end as the demo expects ({HEALTHY} succeeded, {REGRESSING} rolled back)."
        );
    }
    let _ = out.flush();
    drop(out);
    if args.stay {
        println!("Serving {base}/ until Ctrl-C.");
        let _ = tokio::signal::ctrl_c().await;
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), running).await;
    Ok(as_scripted)
}

/// How to read the audit trail afterwards: `canaryd history NAME` while the daemon is up (this
/// build's `history` asks the daemon over HTTP), or the SQLite file itself.
fn history_hint(base: &str, names: &[String], stay: bool) -> String {
    let cli = super::Cli::command();
    let Some(history) = cli.find_subcommand("history") else {
        return "Read it with sqlite3 (tables `audit` and `analyses`).".to_string();
    };
    let url = history.get_arguments().any(|a| a.get_id() == "url");
    let tail = if url {
        format!(" --url {base}")
    } else {
        String::new()
    };
    let lines: Vec<String> = names
        .iter()
        .map(|n| format!("  canaryd history {n}{tail}"))
        .collect();
    if stay {
        format!("Read it with:\n{}", lines.join("\n"))
    } else {
        format!(
            "Read it with sqlite3 (tables `audit` and `analyses`), or run `canaryd demo --stay` \
             and, while it serves:\n{}",
            lines.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_rules_are_valid_against_the_demo_config() {
        let dir = temp_dir();
        let path = prepare(&dir).unwrap();
        let config = crate::config::load(&path).unwrap();
        let rules = daemon::load_rules(&config).unwrap();
        let names: Vec<&String> = rules.rules.keys().collect();
        assert_eq!(names, [HEALTHY, REGRESSING]);
        for rule in rules.rules.values() {
            assert_eq!(rule.source, "sim");
            let last = rule.plan.stages.last().unwrap();
            assert_eq!(last.weight, 100);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bars_fill_with_the_weight() {
        let r = |weight| Row {
            name: "x".into(),
            phase: "progressing".into(),
            weight,
            stage: String::new(),
        };
        assert!(bar(&r(0)).contains(&format!("[{}]", "-".repeat(BAR))));
        assert!(bar(&r(100)).contains(&format!("[{}]", "#".repeat(BAR))));
        assert!(bar(&r(25)).contains(&format!("[{}{}]", "#".repeat(6), "-".repeat(18))));
        assert!(!r(25).finished());
        assert!(
            Row {
                phase: "rolled-back".into(),
                ..r(0)
            }
            .finished()
        );
    }
}
