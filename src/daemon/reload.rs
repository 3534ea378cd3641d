//! Reloads, on request (SIGHUP or `systemctl reload`, through the caller's channel) and when
//! files in the rules directory change (debounced 500 ms). A reload reads and validates each
//! rule file on its own, decides which version of each is in force ([`super::rule_files`]),
//! then swaps the new set in: new rollouts get a task, changed ones use their new rule from the
//! next analysis, and the task of a rollout no file defines any more pauses it at once (never
//! dropped). A broken file holds back no other: its last good rule (if it ever loaded) keeps
//! running, and the reload logs every problem with file:line:col, opens one incident for the
//! file (a daemon event when it runs no rollout; later saves with other problems do not page
//! again while it is open) and shows it in `/metrics` (`canaryd_rule_file_problems` per
//! file, `canaryd_rule_files_broken`, `canaryd_config_last_reload_successful` 0) and in the
//! rollout's API detail; a fixed (or removed) file logs its recovery and its incident is
//! resolved. Only a rules directory that cannot be listed fails the reload as a whole: one
//! daemon incident, resolved by the next reload that reads it. Every reload also rebuilds the notification receivers
//! from the config, re-reading their secret files ([`super::receivers::rebuild`]), so a
//! receiver standing in as unavailable starts delivering once its file is fixed. The config file
//! itself is read only at start: sources, actuators, receivers' addresses and the listen address
//! change only with a restart.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::rule_files::{self, BrokenFile, Cleared, Reloaded};
use super::runner::{
    Incidents, alert_notification, daemon_receivers, enqueue_for, resolve_incidents,
};
use super::{RuleSet, Shared};
use crate::config::Config;
use crate::notify::Notification;
use crate::rollout::{EventKind, Severity};
use crate::rules::Problem;

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

/// The whole reload failed (the rules directory cannot be listed): nothing changes. One
/// incident of the daemon's, however many reloads fail, until one succeeds.
async fn fail(shared: &Shared, problem: String) {
    shared
        .metrics
        .set("canaryd_config_last_reload_successful", &[], 0.0);
    let message = format!("Rule reload failed; the previous rules stay in force:\n{problem}");
    let (kind, severity) = (EventKind::ConfigReloadFailed, Severity::Warning);
    let n = Notification::daemon(
        kind,
        severity,
        message,
        RELOAD_INCIDENT.to_string(),
        shared.clock.now(),
        shared.config.server.public_url.as_deref(),
    );
    enqueue_for(shared, &n, daemon_receivers(shared, kind, severity)).await;
}

/// The incident key of whole reloads failing.
const RELOAD_INCIDENT: &str = "canaryd/daemon/rule-reload";

/// The incident key of one rule file that does not load: one open per file.
fn file_incident(path: &Path) -> String {
    format!("{FILE_INCIDENTS}{}", path.display())
}

const FILE_INCIDENTS: &str = "canaryd/rule-file/";

/// After a reload that read the rules directory: the reload incident is over, and so is the
/// incident of every file that is not broken any more (it loads, or it is gone, also across a
/// restart).
async fn resolve_fixed(shared: &Shared, broken: &HashSet<String>) {
    let now = shared.clock.now();
    let public_url = shared.config.server.public_url.as_deref();
    let resolution = |message: String, key: String| {
        Notification::daemon(
            EventKind::ConfigReloadFailed,
            Severity::Info,
            message,
            key,
            now,
            public_url,
        )
    };
    resolve_incidents(
        shared,
        Incidents::Key(RELOAD_INCIDENT.to_string()),
        resolution(
            "Resolved: the rules directory reloads again.".to_string(),
            RELOAD_INCIDENT.to_string(),
        ),
    )
    .await;
    let open = shared
        .store
        .call(|store| store.open_incidents_under(FILE_INCIDENTS))
        .await;
    let open = match open {
        Ok(open) => open,
        Err(e) => {
            tracing::error!(error = %e, "Could not list the open rule-file incidents.");
            return;
        }
    };
    for incident in open.into_iter().filter(|i| !broken.contains(&i.key)) {
        let file = incident.key.trim_start_matches(FILE_INCIDENTS);
        let message = if Path::new(file).exists() {
            format!("Resolved: rule file {file} loads again.")
        } else {
            format!("Resolved: rule file {file} is gone.")
        };
        let key = incident.key.clone();
        resolve_incidents(
            shared,
            Incidents::Key(key.clone()),
            resolution(message, key),
        )
        .await;
    }
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
    let still_broken: HashSet<String> = set.broken.keys().map(|p| file_incident(p)).collect();
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
    resolve_fixed(shared, &still_broken).await;
    clean
}

/// Enqueue the alert for one broken file, to every receiver a loaded rule routes reload
/// failures to: about the rollout its last good version runs, if any, else a daemon event. One
/// incident per file until it loads again: a file broken again with other problems while its
/// incident is open does not page again.
async fn alert_broken(shared: &Shared, path: &Path, file: &BrokenFile) {
    let now = shared.clock.now();
    let problems = file
        .problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let (kind, severity) = (EventKind::ConfigReloadFailed, Severity::Warning);
    let key = file_incident(path);
    let n = match &file.running {
        Some(name) => {
            let message = format!(
                "Rule file {} does not load; rollout `{name}` keeps running its last good version from it:\n{problems}",
                path.display()
            );
            let rules = shared.rules.load().all();
            let own = rules.iter().find(|r| &r.name == name).map(Arc::as_ref);
            let mut n = alert_notification(shared, own, name, kind, severity, message, now);
            n.group_key = key;
            n
        }
        None => Notification::daemon(
            kind,
            severity,
            format!(
                "Rule file {} does not load and has never loaded: it runs no rollout until it is fixed:\n{problems}",
                path.display()
            ),
            key,
            now,
            shared.config.server.public_url.as_deref(),
        ),
    };
    enqueue_for(shared, &n, daemon_receivers(shared, kind, severity)).await;
}
