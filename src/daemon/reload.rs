//! Reloads, on request (SIGHUP or `systemctl reload`, through the caller's channel) and when
//! files in the rules directory change (debounced 500 ms). A reload reads and validates each
//! rule file on its own, decides which version of each is in force ([`super::rule_files`]),
//! then swaps the new set in: new rollouts get a task, changed ones use their new rule from the
//! next analysis, and the task of a rollout no file defines any more pauses it at once (never
//! dropped). A broken file holds back no other: its last good rule (if it ever loaded) keeps
//! running, and the reload logs every problem with file:line:col, enqueues an alert naming the
//! file (once per set of problems) and shows it in `/metrics` (`canaryd_rule_file_problems` per
//! file, `canaryd_rule_files_broken`, `canaryd_config_last_reload_successful` 0) and in the
//! rollout's API detail; a fixed file logs its recovery. Only a rules directory that cannot be
//! listed fails the reload as a whole. Every reload also rebuilds the notification receivers
//! from the config, re-reading their secret files ([`super::receivers::rebuild`]), so a
//! receiver standing in as unavailable starts delivering once its file is fixed. The config file
//! itself is read only at start: sources, actuators, receivers' addresses and the listen address
//! change only with a restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::rule_files::{self, BrokenFile, Cleared, Reloaded};
use super::runner::{alert, alert_notification};
use super::{RuleSet, Shared};
use crate::config::Config;
use crate::rollout::{EventKind, Severity};
use crate::rules::{Problem, Route};
use crate::store::NewMessage;

/// Quiet time after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// The metrics of the rules in force, at start (every file loaded).
pub(crate) fn record_success(shared: &Shared) {
    record(shared, &RuleSet::default());
}

/// The metrics of the rules in force after they replaced `previous`: the reload's status and
/// time, the rollouts loaded, and each broken file's problems (a file no longer broken loses
/// its series).
fn record(shared: &Shared, previous: &RuleSet) {
    let now = shared.clock.now();
    let set = shared.rules.load();
    let m = &shared.metrics;
    for path in previous
        .broken
        .keys()
        .filter(|p| !set.broken.contains_key(*p))
    {
        m.remove(
            "canaryd_rule_file_problems",
            &[("file", &path.display().to_string())],
        );
    }
    for (path, broken) in &set.broken {
        m.set(
            "canaryd_rule_file_problems",
            &[("file", &path.display().to_string())],
            broken.problems.len() as f64,
        );
    }
    m.set("canaryd_rule_files_broken", &[], set.broken.len() as f64);
    m.set(
        "canaryd_config_last_reload_successful",
        &[],
        if set.broken.is_empty() { 1.0 } else { 0.0 },
    );
    m.set(
        "canaryd_config_last_reload_timestamp_seconds",
        &[],
        now.timestamp_millis() as f64 / 1000.0,
    );
    m.set("canaryd_rules_loaded", &[], set.rules.len() as f64);
    // A removed rollout's series, and a removed check's, go.
    m.retain_rollouts(|rollout| {
        set.rules.get(rollout).map(|rule| {
            rule.checks
                .iter()
                .map(|c| c.spec.name.to_string())
                .collect()
        })
    });
}

/// Reload on every request and file change until shutdown.
pub async fn run(
    shared: Arc<Shared>,
    mut requests: mpsc::Receiver<()>,
    shutdown: CancellationToken,
) {
    let (fs_tx, mut fs_rx) = mpsc::channel::<()>(16);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let _ = fs_tx.try_send(());
        }
    })
    .and_then(|mut w| {
        w.watch(
            &shared.config.rules_dir,
            notify::RecursiveMode::NonRecursive,
        )?;
        Ok(w)
    });
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %shared.config.rules_dir.display(), error = %e, "Cannot watch the rules directory; reload with SIGHUP.");
            None
        }
    };
    let mut requests_open = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = requests.recv(), if requests_open => {
                if got.is_none() {
                    requests_open = false;
                    continue;
                }
                reload(&shared, &shutdown, "reload requested").await;
            }
            Some(()) = fs_rx.recv() => {
                // Debounce: wait until the directory has been quiet for a while.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, fs_rx.recv()).await {}
                reload(&shared, &shutdown, "rule files changed").await;
            }
        }
    }
}

/// Read each file, decide, then swap. Returns whether every rule file loaded.
pub async fn reload(shared: &Arc<Shared>, shutdown: &CancellationToken, why: &str) -> bool {
    crate::systemd::reloading();
    tracing::info!(why, dir = %shared.config.rules_dir.display(), "Reloading rules.");
    let config = shared.config.clone();
    let previous = shared.rules.load_full();
    let running = Arc::clone(&previous);
    let loaded = tokio::task::spawn_blocking(move || read(&config, &running)).await;
    let clean = match loaded {
        Ok(Ok(reloaded)) => apply(shared, &previous, reloaded, shutdown).await,
        Ok(Err(problem)) => {
            tracing::error!(problem = %problem, "Rule reload failed; the running rules stay in force.");
            fail(shared, problem.to_string()).await;
            false
        }
        Err(e) => {
            fail(shared, format!("the reload task failed: {e}")).await;
            false
        }
    };
    // Receivers do not depend on the rules: rebuild them whether or not the rules were good.
    super::receivers::rebuild(shared).await;
    let set = shared.rules.load();
    let (n, broken) = (set.rules.len(), set.broken.len());
    crate::systemd::ready(&if clean {
        format!("Rules reloaded: {n} rollout(s).")
    } else if broken > 0 {
        format!("Rules reloaded: {n} rollout(s); {broken} rule file(s) BROKEN, see the log.")
    } else {
        format!("Rule reload FAILED; still running the previous {n} rollout(s).")
    });
    clean
}

/// Read and validate each rule file on its own and put them together with the running set
/// (blocking: call from `spawn_blocking`). Only a directory that cannot be listed is an error.
fn read(config: &Config, running: &RuleSet) -> Result<Reloaded, Problem> {
    let files = crate::rules::load_each(&config.rules_dir, &config.known_names())?;
    Ok(rule_files::merge(running, files, |path, name, holder| {
        // Read again only to point at the duplicate's name: rare, and a file changed meanwhile
        // only moves the pointer.
        let text = std::fs::read_to_string(path).unwrap_or_default();
        crate::rules::duplicate_name(path, &text, name, holder)
    }))
}

/// The whole reload failed (the rules directory cannot be listed): nothing changes.
async fn fail(shared: &Shared, problem: String) {
    shared
        .metrics
        .set("canaryd_config_last_reload_successful", &[], 0.0);
    let message = format!("Rule reload failed; the previous rules stay in force:\n{problem}");
    alert(
        shared,
        shared.rules.load().all(),
        "canaryd",
        EventKind::ConfigReloadFailed,
        Severity::Warning,
        message,
    )
    .await;
}

/// Swap the new set in, start the new rollouts, tell every task, and report the broken files.
/// Returns whether every rule file loaded.
async fn apply(
    shared: &Arc<Shared>,
    previous: &RuleSet,
    reloaded: Reloaded,
    shutdown: &CancellationToken,
) -> bool {
    let Reloaded {
        set,
        added,
        removed,
        broken,
        cleared,
    } = reloaded;
    for rule in set.rules.values() {
        shared.table.register(&rule.name, rule.targeting.clone());
    }
    for (name, path) in &removed {
        tracing::warn!(rollout = %name, file = %path.display(), "No rule file defines it any more: pausing the rollout.");
    }
    let alerts: Vec<(std::path::PathBuf, BrokenFile)> = broken
        .iter()
        .filter_map(|path| Some((path.clone(), set.broken.get(path)?.clone())))
        .collect();
    for (path, file) in &alerts {
        for problem in &file.problems {
            match &file.running {
                Some(rollout) => {
                    tracing::error!(file = %path.display(), rollout = %rollout, problem = %problem, "A rule file does not load; its last good version stays in force.");
                }
                None => {
                    tracing::error!(file = %path.display(), problem = %problem, "A rule file does not load; it runs no rollout.");
                }
            }
        }
    }
    for (path, how) in &cleared {
        match how {
            Cleared::Loads => {
                tracing::info!(file = %path.display(), "The rule file loads again: its rule is in force.");
            }
            Cleared::Gone => {
                tracing::info!(file = %path.display(), "The broken rule file is gone.");
            }
        }
    }
    let clean = set.broken.is_empty();
    shared.rules.store(Arc::new(set));
    record(shared, previous);
    for name in &added {
        if shared.scheduler.has(name) {
            tracing::info!(rollout = %name, "A rule file defines it again: it keeps its state.");
        } else {
            tracing::info!(rollout = %name, "New rollout: starting it.");
            shared.scheduler.spawn(shared, name, shutdown);
        }
    }
    shared.scheduler.rules_changed();
    for (path, file) in &alerts {
        alert_broken(shared, path, file).await;
    }
    clean
}

/// Enqueue the alert for one broken file, routed by every loaded rule (as reload failures
/// are): about the rollout its last good version runs, if any, and one incident per file and
/// set of problems, so two files broken by one reload are two alerts.
async fn alert_broken(shared: &Shared, path: &Path, file: &BrokenFile) {
    let now = shared.clock.now();
    let problems = file
        .problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let (rollout, message) = match &file.running {
        Some(name) => (
            name.as_str(),
            format!(
                "Rule file {} does not load; rollout `{name}` keeps running its last good version from it:\n{problems}",
                path.display()
            ),
        ),
        None => (
            "canaryd",
            format!(
                "Rule file {} does not load and has never loaded: it runs no rollout until it is fixed:\n{problems}",
                path.display()
            ),
        ),
    };
    let rules = shared.rules.load().all();
    let own = rules.iter().find(|r| r.name == rollout).map(Arc::as_ref);
    let mut n = alert_notification(
        shared,
        own,
        rollout,
        EventKind::ConfigReloadFailed,
        Severity::Warning,
        message,
        now,
    );
    n.group_key = format!(
        "canaryd/rule-file/{}/{}",
        path.display(),
        now.timestamp_millis()
    );
    // Every rule routes it: the receivers of every route that takes it, each once, and the
    // notification encoded once for them (not once per rule: there may be thousands).
    let mut receivers: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for route in rules.iter().flat_map(|r| &r.routes) {
        if route.matches(n.event, n.severity) {
            for r in &route.receivers {
                if seen.insert(r.as_str()) {
                    receivers.push(r.clone());
                }
            }
        }
    }
    let routes = [Route {
        receivers,
        events: vec![n.event],
        min_severity: n.severity,
    }];
    let queued: Vec<NewMessage> = match crate::notify::outbox_messages(&routes, &n, 0) {
        Ok(queued) => queued,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "Could not encode the broken rule file's alert.");
            return;
        }
    };
    if let Err(e) = super::runner::enqueue(shared, queued, now).await {
        tracing::error!(file = %path.display(), error = %e, "Could not enqueue the broken rule file's alert.");
    }
}
