//! Reloads, on request (SIGHUP or `systemctl reload`, through the caller's channel) and when
//! files in the rules directory change (debounced 500 ms). A reload validates and builds the
//! whole new rule set, then swaps it in: new rollouts get a task, changed ones use their new rule
//! from the next analysis, removed ones are paused (never dropped). A bad edit leaves the running
//! rules untouched, logs every problem with file:line, enqueues an alert and sets
//! `canaryd_config_last_reload_successful` to 0. Every reload also rebuilds the notification
//! receivers from the config, re-reading their secret files ([`super::receivers::rebuild`]), so a
//! receiver standing in as unavailable starts delivering once its file is fixed. The config file
//! itself is read only at start: sources, actuators, receivers' addresses and the listen address
//! change only with a restart.

use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::runner::alert;
use super::{RuleSet, Shared, load_rules};
use crate::rollout::{EventKind, Severity};

/// Quiet time after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

pub(crate) fn record_success(shared: &Shared) {
    let now = chrono::Utc::now();
    shared
        .metrics
        .set("canaryd_config_last_reload_successful", &[], 1.0);
    shared.metrics.set(
        "canaryd_config_last_reload_timestamp_seconds",
        &[],
        now.timestamp_millis() as f64 / 1000.0,
    );
    shared.metrics.set(
        "canaryd_rules_loaded",
        &[],
        shared.rules.load().rules.len() as f64,
    );
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

/// Validate, build, then swap. Returns whether the new rules are in force.
pub async fn reload(shared: &Arc<Shared>, shutdown: &CancellationToken, why: &str) -> bool {
    crate::systemd::reloading();
    tracing::info!(why, dir = %shared.config.rules_dir.display(), "Reloading rules.");
    let config = shared.config.clone();
    let loaded = tokio::task::spawn_blocking(move || load_rules(&config)).await;
    let result = match loaded {
        Ok(Ok(rules)) => {
            apply(shared, rules, shutdown).await;
            record_success(shared);
            true
        }
        Ok(Err(problems)) => {
            for p in &problems {
                tracing::error!(problem = %p, "Rule reload failed; the running rules stay in force.");
            }
            fail(shared, problems.iter().map(ToString::to_string).collect()).await;
            false
        }
        Err(e) => {
            fail(shared, vec![format!("the reload task failed: {e}")]).await;
            false
        }
    };
    // Receivers do not depend on the rules: rebuild them whether or not the rules were good.
    super::receivers::rebuild(shared).await;
    let n = shared.rules.load().rules.len();
    crate::systemd::ready(&if result {
        format!("Rules reloaded: {n} rollout(s).")
    } else {
        format!("Rule reload FAILED; still running the previous {n} rollout(s).")
    });
    result
}

async fn fail(shared: &Shared, problems: Vec<String>) {
    shared
        .metrics
        .set("canaryd_config_last_reload_successful", &[], 0.0);
    let message = format!(
        "Rule reload failed; the previous rules stay in force:\n{}",
        problems.join("\n")
    );
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

async fn apply(shared: &Arc<Shared>, rules: RuleSet, shutdown: &CancellationToken) {
    let old = shared.rules.load_full();
    for rule in rules.rules.values() {
        shared.table.register(&rule.name, rule.targeting.clone());
    }
    let added: Vec<String> = rules
        .rules
        .keys()
        .filter(|n| !shared.scheduler.has(n))
        .cloned()
        .collect();
    for name in old.rules.keys().filter(|n| !rules.rules.contains_key(*n)) {
        tracing::warn!(rollout = %name, "Its rule file is gone: pausing the rollout.");
    }
    shared.rules.store(Arc::new(rules));
    for name in &added {
        tracing::info!(rollout = %name, "New rollout: starting it.");
        shared.scheduler.spawn(shared, name, shutdown);
    }
    shared.scheduler.rules_changed();
}
