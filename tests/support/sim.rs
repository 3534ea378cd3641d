//! Helpers for the end-to-end tests (included with `#[path]`): a rollout rule over the simulated
//! service's Prometheus metrics, compressed to seconds, and an embedded daemon per scenario.

#![allow(dead_code)] // Each test file uses its own part.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use canaryd::daemon::{self, Options};
use canaryd::rollout::RolloutState;
use canaryd::store::{AuditEntry, Store};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// A fresh temporary directory with `rules/`.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir =
        std::env::temp_dir().join(format!("canaryd-e2e-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    dir
}

/// A rollout of the simulated `service` (its `service` label) judged on Prometheus: 10% → 25% →
/// 50% → 100% with stages of a few seconds and an analysis every second; the 25% stage lasts
/// 15 s, longer than the p90 check's 10 s window, so that stage is judged on its own data. Checks: the canary's
/// error rate above 2% (critical, rollback), its p90 more than 25% above the baseline's
/// (critical, rollback), and its memory growing faster than 30 MB a minute (pause).
pub fn rule(name: &str, service: &str, max_inconclusive: u32) -> String {
    let sel = format!("service=\"{service}\", {{{{label}}}}=\"{{{{side}}}}\"");
    format!(
        r#"[rollout]
name = "{name}"
team = "e2e"
source = "prometheus"
actuator = "builtin"
rollback_to = "zero"

[analysis]
every = "1s"
warmup = "1s"
max_inconclusive = {max_inconclusive}

[[stages]]
name = "10%"
weight = 10
min_duration = "3s"
required_passes = 2

[[stages]]
name = "25%"
weight = 25
min_duration = "15s"
required_passes = 2

[[stages]]
name = "50%"
weight = 50
min_duration = "2s"
required_passes = 2

[[stages]]
name = "100%"
weight = 100
min_duration = "1s"
required_passes = 1

[sides]
label = "version"
baseline = "baseline"
canary = "canary"

[[checks]]
name = "error-rate-critical"
kind = "error-rate-absolute"
threshold = 0.1
# A 3 s window holds a few dozen requests, where one error is several percent: the observed
# rate would roll a healthy canary back by chance, so this check asks for a significant excess.
# A pass must show the rate within the threshold (Wilson's 99% bound): a few dozen requests
# without an error show 10% (60 show 9.9%), not 2%; the spike (every request fails) is far
# beyond it.
test = "statistical"
errors_query = 'sum(increase(http_requests_total{{{sel}, code="500"}}[{{{{step}}}}]))'
total_query = 'sum(increase(http_requests_total{{{sel}}}[{{{{step}}}}]))'
window = "3s"
step = "3s"
min_samples = 20
group = "errors"
critical = true
action = "rollback"

[[checks]]
name = "p90-vs-baseline"
kind = "relative"
tolerance = 0.25
query = 'histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{{{sel}}}[1s])))'
# Judged on its stage's own points since the warm-up (20 at least, issue 19), one a second; the
# window (the last 20 s of the stage) is what the scan for a sudden regression reads.
window = "20s"
step = "1s"
min_samples = 7
group = "latency"
critical = true
action = "rollback"

[[checks]]
name = "memory-trend"
kind = "trend"
max_slope_per_minute = 30000000.0
query = 'sum(process_resident_memory_bytes{{{sel}}})'
# 20 points: Mann-Kendall ranks cap what 10 can show (z 4.0 for 10 points in order), and with
# the degrees of freedom a possibly correlated window keeps (issue 18), a leak whose points
# jitter around its line is not significant at 99% on 10 of them.
window = "20s"
min_samples = 10
group = "saturation"
action = "pause"

[[routes]]
receivers = ["team-email"]
events = ["rolled-back"]
"#
    )
}

/// A daemon embedded in-process for one scenario, on its own state and port.
pub struct Daemon {
    pub dir: PathBuf,
    pub base: String,
    pub store: Store,
    pub shutdown: CancellationToken,
    pub running: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

impl Daemon {
    /// Write the config and `rule` for rollout `name` into `dir`, and start the daemon. Its
    /// `team-email` receiver sends to the SMTP server on 127.0.0.1:`smtp_port`.
    pub async fn start(
        dir: &Path,
        prometheus: &str,
        name: &str,
        rule: &str,
        smtp_port: u16,
    ) -> Daemon {
        let config = format!(
            "state_dir = {state:?}\nrules_dir = {rules:?}\nemergency_stop_file = {stop:?}\n\n\
             [server]\nlisten = \"127.0.0.1:0\"\n\n\
             [sources.prometheus]\nkind = \"prometheus\"\nurl = \"{prometheus}\"\n\
             timeout = \"2s\"\nretries = 0\n\n\
             [actuators.builtin]\nkind = \"builtin\"\n\n\
             [receivers.team-email]\nkind = \"email\"\nto = [\"oncall@example.com\"]\n\
             from = \"canaryd@example.com\"\nsmtp_host = \"127.0.0.1\"\n\
             smtp_port = {smtp_port}\ntls = \"none\"\n",
            state = dir.join("state").display().to_string(),
            rules = dir.join("rules").display().to_string(),
            stop = dir.join("stop").display().to_string(),
        );
        let path = dir.join("canaryd.toml");
        std::fs::write(&path, config).unwrap();
        std::fs::write(dir.join("rules").join(format!("{name}.toml")), rule).unwrap();
        let config = canaryd::config::load(&path).unwrap();
        let shutdown = CancellationToken::new();
        let (_reload_tx, reload_rx) = mpsc::channel(1);
        let (addr_tx, addr_rx) = oneshot::channel();
        let options = Options {
            emergency_stop_at_start: false,
            on_listen: Some(addr_tx),
            ..Options::default()
        };
        let running = tokio::spawn(daemon::run(
            config,
            options,
            canaryd::cli::serve::routes,
            shutdown.clone(),
            reload_rx,
        ));
        let addr = match tokio::time::timeout(Duration::from_secs(10), addr_rx).await {
            Ok(Ok(addr)) => addr,
            other => panic!("the daemon did not start ({other:?})"),
        };
        Daemon {
            dir: dir.to_path_buf(),
            base: format!("http://{addr}"),
            store: Store::open(&dir.join("state")).unwrap(),
            shutdown,
            running,
        }
    }

    /// The rollout's stored state.
    pub fn state(&self, name: &str) -> Option<RolloutState> {
        self.store
            .rollout::<RolloutState>(name)
            .unwrap()
            .map(|s| s.state)
    }

    /// The audit trail, oldest first.
    pub fn audit(&self, name: &str) -> Vec<AuditEntry> {
        let mut items = self.store.audit_page(name, None, 1000).unwrap().items;
        items.sort_by_key(|a| a.id);
        items
    }

    /// Stop the daemon (bounded) and remove its directory.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.running).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
        if std::env::var_os("KEEP_E2E").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Poll `check` every 100 ms until it gives `Some`, at most `within`; `Err` says what timed out.
pub async fn wait_for<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {within:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
