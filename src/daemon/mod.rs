//! `canaryd serve`: the long-running daemon, embeddable through [`run`].
//!
//! It owns the daemon's world and its lifecycle: lock the state directory (one daemon per
//! state), open the store, load and validate the rules, build sources and actuators, re-drive the
//! actuator intents a crash left pending, start one supervised task per rollout ([`scheduler`],
//! [`runner`]), serve HTTP ([`server`]: its own routes, and the faces' router that the caller
//! builds from a [`Control`]), watch the emergency stop ([`emergency`]) and reload rules
//! on request or on file changes ([`reload`]: validate, build, then swap). It knows no signals:
//! the caller cancels a `CancellationToken` to stop it and sends `()` on a channel to reload, so
//! tests run the whole daemon in-process. It knows no face either: the API and the status pages
//! are handed a [`Control`] (never [`Shared`], whose fields are the daemon's own) by the
//! composition root, which gives `run` the function building their router ([`Faces`]). It
//! decides nothing about rollouts: the state machine does, through the runners.
//!
//! - [`analysis`]: query both sides, judge, score.
//! - [`runner`]: one rollout's task: step, record, then act.
//! - [`control`]: [`Control`], the faces' narrow handle on the daemon.
//! - [`command`]: why a command was not carried out ([`CommandError`]), typed for the API.
//! - [`scheduler`]: supervised tasks; [`mailbox`]: each task's messages.
//! - [`reload`]: rule reloads (SIGHUP, file changes); [`rule_files`]: which version of each
//!   rule file is in force.
//! - [`emergency`]: the emergency-stop switch.
//! - [`storage`]: the state database's health (deleted, replaced, failing: stop acting).
//! - [`server`]: HTTP routes.
//! - [`metrics`], [`status`]: what `/metrics` and `/v1/rollouts` show.

pub mod access;
pub mod analysis;
pub mod command;
pub mod control;
pub mod emergency;
pub mod mailbox;
pub mod metrics;
pub mod receivers;
pub mod reload;
pub mod rule_files;
pub mod runner;
pub mod scheduler;
pub mod server;
pub mod status;
pub mod storage;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::actuator::{self, Actuator, WeightChange, WeightTable};
use crate::config::{Config, SourceConfig};
use crate::rollout::RolloutState;
use crate::rules::{Problem, RolloutRule};
use crate::source::{MetricSource, PrometheusSource};
use crate::store::{StateLock, Store, StoreError};

pub use command::CommandError;
pub use control::{Control, Order};
pub use emergency::Emergency;
pub use metrics::Metrics;
pub use status::RolloutStatus;

/// How long shutdown waits for in-flight analyses and steps before stopping them.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(7);

/// Why the daemon could not start (or stopped on an error).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the rule files in {dir} are not valid:\n{}", list(problems))]
    Rules { dir: String, problems: Vec<Problem> },
    #[error("source `{name}`: {message}")]
    Source { name: String, message: String },
    #[error("{0}")]
    Actuator(#[from] actuator::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Internal(String),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Extra knobs for embedding.
#[derive(Debug, Default)]
pub struct Options {
    /// Engage the emergency stop at start (the binary sets it from `CANARYD_EMERGENCY_STOP`).
    pub emergency_stop_at_start: bool,
    /// Told the bound address once the listener is up (useful with port 0).
    pub on_listen: Option<oneshot::Sender<SocketAddr>>,
    /// Where the daemon reads the time: the system clock by default; tests pass one that
    /// follows tokio's pausable time ([`crate::clock`]).
    pub clock: crate::clock::Clock,
}

/// The loaded rules, swapped whole on reload.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: BTreeMap<String, Arc<RolloutRule>>,
    /// The rule files whose current text does not load, by path ([`rule_files`]): their last
    /// good rules, if any, are in `rules`.
    pub broken: BTreeMap<std::path::PathBuf, rule_files::BrokenFile>,
}

impl RuleSet {
    /// The broken file whose last good rule runs rollout `name`, if its file is broken.
    pub fn broken_file_of(
        &self,
        name: &str,
    ) -> Option<(&std::path::Path, &rule_files::BrokenFile)> {
        self.broken
            .iter()
            .find(|(_, b)| b.running.as_deref() == Some(name))
            .map(|(path, b)| (path.as_path(), b))
    }

    /// The problems (file:line:col) keeping rollout `name`'s rule file from loading, as the
    /// API and the page show them; empty while it loads.
    pub fn rule_file_problems(&self, name: &str) -> Vec<String> {
        self.broken_file_of(name)
            .map(|(_, file)| file.problems.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<Arc<RolloutRule>> {
        self.rules.get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<RolloutRule>> {
        self.rules.values().cloned().collect()
    }
}

/// What every part of the daemon shares. Its fields are the daemon's own: a face gets a
/// [`Control`].
pub struct Shared {
    config: Config,
    store: Store,
    rules: ArcSwap<RuleSet>,
    sources: BTreeMap<String, Arc<dyn MetricSource>>,
    actuators: BTreeMap<String, Arc<dyn Actuator>>,
    /// The builtin actuator's weights, served over HTTP.
    table: WeightTable,
    metrics: Metrics,
    /// Wakes the notification dispatcher and swaps its receivers on reload.
    notify: crate::notify::DispatcherHandle,
    statuses: RwLock<BTreeMap<String, RolloutStatus>>,
    emergency: watch::Sender<Emergency>,
    /// Bounds the metric queries in flight across the daemon.
    permits: Arc<Semaphore>,
    /// Store and rules are loaded.
    ready: AtomicBool,
    scheduler: scheduler::Scheduler,
    /// The API tokens (`server.token_file`), re-read when the file changes.
    tokens: crate::tokens::Tokens,
    /// Where the runners, the scheduler, reloads and alerts read the time ([`Options::clock`]).
    clock: crate::clock::Clock,
}

impl Shared {
    /// Replace one rollout's published status. An unchanged status (most steps change nothing
    /// that is published) is left in place rather than replaced by a fresh copy: a long-lived
    /// allocation made in the middle of an analysis's short-lived ones would pin their memory.
    pub fn publish(&self, status: RolloutStatus) {
        let mut statuses = self
            .statuses
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match statuses.get_mut(&status.name) {
            Some(current) if *current == status => {}
            Some(current) => *current = status,
            None => {
                statuses.insert(status.name.clone(), status);
            }
        }
    }

    /// At most `n` rollouts' statuses after the rollout named `after` (from the first when
    /// `None`), by name.
    pub fn statuses_after(&self, after: Option<&str>, n: usize) -> Vec<RolloutStatus> {
        let statuses = self
            .statuses
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        metrics::statuses_after(&statuses, after, n)
    }

    /// Whether a status is published for rollout `name`.
    pub fn has_status(&self, name: &str) -> bool {
        self.statuses
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(name)
    }

    /// Every rollout's status, by name.
    pub fn statuses(&self) -> Vec<RolloutStatus> {
        self.statuses
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// A short fingerprint of a rule, stored with each state (as 16 hex digits, [`Fingerprint`]'s
/// `Display`) to tell which rule it was computed under.
pub fn fingerprint(rule: &RolloutRule) -> Fingerprint {
    // FNV-1a over the rule's debug form: stable within a build, cheap, no extra dependency.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{rule:?}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    Fingerprint(hash)
}

/// A rule's [`fingerprint`]: kept as a number by every rollout's task, written as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint(u64);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Build the metric sources of the config.
fn build_sources(config: &Config) -> Result<BTreeMap<String, Arc<dyn MetricSource>>, DaemonError> {
    let mut out: BTreeMap<String, Arc<dyn MetricSource>> = BTreeMap::new();
    for (name, source) in &config.sources {
        let built: Arc<dyn MetricSource> = match source {
            SourceConfig::Prometheus(c) => {
                Arc::new(PrometheusSource::new(name.clone(), c).map_err(|e| {
                    DaemonError::Source {
                        name: name.clone(),
                        message: e.to_string(),
                    }
                })?)
            }
        };
        out.insert(name.clone(), built);
    }
    Ok(out)
}

/// Load and validate the rule files (blocking: call from `spawn_blocking`), for start-up:
/// every file must load, as `canaryd check` requires, so a daemon never starts with a rule file
/// it would not run. Reloads take each file on its own ([`rule_files`]).
pub fn load_rules(config: &Config) -> Result<RuleSet, Vec<Problem>> {
    let rules = crate::rules::load_dir(&config.rules_dir, &config.known_names())?;
    Ok(RuleSet {
        rules: rules
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect(),
        broken: BTreeMap::new(),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Internal(format!("a blocking task failed: {e}")))
}

/// Builds the faces' routes (the API, the status pages) on the daemon's [`Control`]; the daemon
/// serves them beside its own (`/healthz`, `/readyz`, `/metrics`, the builtin actuator's).
pub type Faces = fn(Control) -> axum::Router;

/// Run the daemon until `shutdown` is cancelled, serving its own routes and those `faces`
/// builds. Each `()` received on `reload` reloads the rules.
pub async fn run(
    config: Config,
    options: Options,
    faces: Faces,
    shutdown: CancellationToken,
    reload: mpsc::Receiver<()>,
) -> Result<(), DaemonError> {
    run_with_sources(config, options, faces, BTreeMap::new(), shutdown, reload).await
}

/// [`run`], with metric sources built by the caller (`canaryd demo` injects its simulator's
/// in-memory source). Each replaces the config's `[sources.NAME]` of the same name, which must
/// still be configured: rule files are validated against the config's names.
pub async fn run_with_sources(
    config: Config,
    options: Options,
    faces: Faces,
    injected: BTreeMap<String, Arc<dyn MetricSource>>,
    shutdown: CancellationToken,
    reload: mpsc::Receiver<()>,
) -> Result<(), DaemonError> {
    // Files other users can read are said once, before the state directory is created private.
    for warning in crate::config::exposure::warnings(&config) {
        tracing::warn!(file = %warning.0.path.display(), "{}", warning.0.message);
    }
    // One daemon per state directory: the lock is held until this function returns.
    let dir = config.state_dir.clone();
    let _lock = blocking(move || StateLock::acquire(&dir)).await??;
    // The database and the rule files are independent: open one while loading the other.
    crate::systemd::status("Opening the state database and loading rules.");
    let dir = config.state_dir.clone();
    let opening = tokio::task::spawn_blocking(move || Store::open(&dir));
    let cfg = config.clone();
    let loading = blocking(move || load_rules(&cfg));
    let store = opening
        .await
        .map_err(|e| DaemonError::Internal(format!("a blocking task failed: {e}")))??;
    let rules = loading.await?.map_err(|problems| DaemonError::Rules {
        dir: config.rules_dir.display().to_string(),
        problems,
    })?;
    let mut sources = build_sources(&config)?;
    sources.extend(injected);
    let metrics = Metrics::new();
    let sources = sources
        .into_iter()
        .map(|(name, source)| (name, metrics::Timed::wrap(source, &metrics)))
        .collect();
    let table = WeightTable::new();
    let mut actuators = BTreeMap::new();
    for (name, c) in &config.actuators {
        actuators.insert(name.clone(), actuator::build(name, c, &table)?);
    }
    for rule in rules.rules.values() {
        table.register(&rule.name, rule.targeting.clone());
    }
    let (built, receiver_problems) = receivers::build(&config.receivers);
    for problem in &receiver_problems {
        tracing::error!(
            "{problem}; its notifications wait in the outbox until a reload can build it."
        );
    }
    let dispatcher = crate::notify::Dispatcher::with_clock(
        store.clone(),
        built,
        crate::notify::DispatchSettings::default(),
        options.clock,
    );
    let notify = dispatcher.handle();
    let dispatch_token = CancellationToken::new();
    let dispatching = tokio::spawn(dispatcher.run(dispatch_token.clone()));
    let tokens = crate::tokens::Tokens::load(config.server.token_file.as_deref())
        .map_err(|e| DaemonError::Internal(e.to_string()))?;
    let (emergency_tx, _) = watch::channel(Emergency::default());
    let shared = Arc::new(Shared {
        notify,
        permits: Arc::new(Semaphore::new(config.scheduler.max_concurrent_queries)),
        config,
        store,
        rules: ArcSwap::from_pointee(rules),
        sources,
        actuators,
        table,
        metrics,
        statuses: RwLock::new(BTreeMap::new()),
        emergency: emergency_tx,
        ready: AtomicBool::new(false),
        scheduler: scheduler::Scheduler::default(),
        tokens,
        clock: options.clock,
    });
    reload::record_success(&shared);
    shared
        .metrics
        .set("canaryd_emergency_stop_active", &[], 0.0);

    restore(&shared).await?;

    if options.emergency_stop_at_start {
        emergency::engage(
            &shared,
            "CANARYD_EMERGENCY_STOP is set".to_string(),
            "environment".to_string(),
        )
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))?;
    } else {
        emergency::refresh(&shared, "", "").await;
    }

    let listener = tokio::net::TcpListener::bind(shared.config.server.listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: shared.config.server.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: shared.config.server.listen,
            source,
        })?;
    if let Some(tx) = options.on_listen {
        let _ = tx.send(addr);
    }

    for name in shared.rules.load().rules.keys() {
        shared.scheduler.spawn(&shared, name, &shutdown);
    }
    let file_watch = tokio::spawn(emergency::watch_file(Arc::clone(&shared), shutdown.clone()));
    let store_watch = tokio::spawn(storage::watch(Arc::clone(&shared), shutdown.clone()));
    let pruning = tokio::spawn(storage::prune(Arc::clone(&shared), shutdown.clone()));
    let reloader = tokio::spawn(reload::run(Arc::clone(&shared), reload, shutdown.clone()));
    let watchdog = crate::systemd::watchdog_interval().map(|every| {
        let token = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    _ = tick.tick() => crate::systemd::watchdog(),
                }
            }
        })
    });

    shared.ready.store(true, Ordering::SeqCst);
    let summary = format!(
        "Serving {} rollout(s) on http://{addr}.",
        shared.rules.load().rules.len()
    );
    tracing::info!(listen = %addr, rollouts = shared.rules.load().rules.len(), "canaryd is ready.");
    crate::systemd::ready(&summary);

    let app = server::router(
        Arc::clone(&shared),
        faces(Control::new(Arc::clone(&shared))),
    )
    .into_make_service_with_connect_info::<SocketAddr>();
    let token = shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await;

    crate::systemd::stopping();
    tracing::info!("Shutting down: finishing in-flight work.");
    shared.ready.store(false, Ordering::SeqCst);
    shared.scheduler.drain(DRAIN_LIMIT).await;
    // Notifications recorded by the last steps get one more chance to go out before exit;
    // whatever is still pending stays in the outbox for the next start.
    shared.notify.wake();
    dispatch_token.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), dispatching).await;
    file_watch.abort();
    store_watch.abort();
    pruning.abort();
    reloader.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!("Stopped.");
    served.map_err(DaemonError::Serve)
}

/// After a start (or a crash): publish the stored states, put the builtin weights back, and
/// re-drive every intent whose outcome is unknown with its own idempotency key.
async fn restore(shared: &Arc<Shared>) -> Result<(), DaemonError> {
    let (states, pending) = shared
        .store
        .call(|s| Ok::<_, StoreError>((s.rollouts::<RolloutState>()?, s.pending_intents()?)))
        .await?;
    let rules = shared.rules.load();
    for stored in &states {
        let rule = rules.get(&stored.name);
        shared.publish(RolloutStatus::of(
            &stored.name,
            &stored.state,
            rule.as_deref(),
        ));
        let active = matches!(
            stored.state.phase,
            crate::rollout::Phase::Progressing { .. }
                | crate::rollout::Phase::WaitingApproval { .. }
        );
        if rule.is_none() && active {
            runner::pause_orphan(shared, &stored.name, stored).await;
        }
    }
    // The builtin table lives in memory: put each rollout's last recorded weight back.
    let mut restored = 0usize;
    for stored in &states {
        let Some(rule) = rules.get(&stored.name) else {
            continue;
        };
        let Some(act) = shared.actuators.get(&rule.actuator) else {
            continue;
        };
        if act.kind() != "builtin" {
            continue;
        }
        let change = WeightChange {
            rollout: stored.name.clone(),
            stage: runner::stage_label(&stored.state, &rule),
            weight: stored.state.weight,
            previous_weight: stored.state.weight,
            reason: "restored after a restart".to_string(),
            idempotency_key: format!(
                "{}/restore/{}",
                stored.name,
                stored.updated_at.timestamp_millis()
            ),
        };
        match act.set_weight(&change).await {
            Ok(()) => restored += 1,
            Err(e) => {
                tracing::error!(rollout = %stored.name, error = %e, "Could not restore the builtin weight.");
            }
        }
    }
    if restored > 0 {
        tracing::info!(
            rollouts = restored,
            "Restored the builtin canary weights recorded before the restart."
        );
    }
    for intent in pending {
        let Some(rule) = rules.get(&intent.rollout) else {
            tracing::error!(rollout = %intent.rollout, key = %intent.idempotency_key, "A pending weight change has no rule file to name its actuator; left pending.");
            continue;
        };
        let state = states
            .iter()
            .find(|s| s.name == intent.rollout)
            .map(|s| s.state.clone())
            .unwrap_or_default();
        tracing::warn!(rollout = %intent.rollout, weight = intent.weight, key = %intent.idempotency_key, "Re-driving a weight change interrupted by a restart.");
        let change = WeightChange {
            rollout: intent.rollout.clone(),
            stage: runner::stage_label(&state, &rule),
            weight: intent.weight,
            previous_weight: intent.previous_weight,
            reason: "re-driven after a restart".to_string(),
            idempotency_key: intent.idempotency_key.clone(),
        };
        runner::redrive(shared, rule, intent.id, change).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{KnownNames, parse_rule};

    /// A shipped example rule file.
    const RULE: &str = include_str!("../../rules/checkout-api.toml");

    fn rule(text: &str) -> RolloutRule {
        parse_rule(std::path::Path::new("web.toml"), text, &KnownNames::any()).unwrap()
    }

    #[test]
    fn a_rule_fingerprint_is_sixteen_hex_digits_and_follows_the_rule() {
        let written = fingerprint(&rule(RULE)).to_string();
        assert_eq!(written.len(), 16, "{written}");
        assert!(
            written
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(fingerprint(&rule(RULE)), fingerprint(&rule(RULE)));
        let edited = RULE.replace("tolerance = 1.0", "tolerance = 0.9");
        assert_ne!(edited, RULE);
        assert_ne!(fingerprint(&rule(&edited)), fingerprint(&rule(RULE)));
    }
}
