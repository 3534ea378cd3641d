//! A real Prometheus for integration tests: started from the Debian package's binary on a free
//! 127.0.0.1 port with its own temporary data directory, and killed (directory removed) on drop.
//!
//! Include it from a test file with:
//!
//! ```ignore
//! #[path = "support/prometheus.rs"]
//! mod prometheus_support;
//! use prometheus_support::Prometheus;
//! ```
//!
//! Two ways to give it data:
//! - **Backfill** (`Prometheus::builder().backfill(openmetrics_text)`): the text is turned into TSDB
//!   blocks by `promtool tsdb create-blocks-from openmetrics` before the server starts, so history
//!   exists at once. Timestamps are unix seconds and may be of any age (retention is set to 100
//!   years and Prometheus 2.39+ merges overlapping blocks by itself, so no extra flag is needed).
//!   A trailing `# EOF` line is added when missing.
//! - **Scrape** (`.scrape("job", "127.0.0.1:PORT")`): a scrape job pointing at an address the test
//!   serves, every second (`.scrape_interval(..)` to change it). `wait_for_data` waits, bounded,
//!   until a query has an answer.
//!
//! `stop()` and `restart()` take the same server down and up again on the same port with the same
//! data, to test outages. Everything here is blocking and bounded in time; from a
//! `#[tokio::test]` whose own tasks must keep running meanwhile (a scrape target), use the
//! multi-thread flavour. The binaries are `/usr/bin/prometheus` and `/usr/bin/promtool` (override
//! with `CANARYD_PROMETHEUS` / `CANARYD_PROMTOOL`); when missing, tests fail and say to run
//! `apt-get install prometheus`. They never skip.

#![allow(dead_code)] // Each test file uses its own part of the harness.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a start (or restart) may take before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often readiness and data are polled.
const POLL: Duration = Duration::from_millis(100);
/// Attempts at a first start, each on a fresh port, in case another process took the port.
const START_ATTEMPTS: usize = 3;

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// Settings for a [`Prometheus`] before it starts.
#[derive(Debug, Clone)]
pub struct PrometheusBuilder {
    backfills: Vec<String>,
    scrapes: Vec<(String, String)>,
    scrape_interval: Duration,
}

/// A running (or stopped) Prometheus owned by one test.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
}

impl PrometheusBuilder {
    /// Adds OpenMetrics text to backfill before the start. May be called several times.
    pub fn backfill(mut self, openmetrics: impl Into<String>) -> Self {
        self.backfills.push(openmetrics.into());
        self
    }

    /// Adds a scrape job `job` with one target `host:port` (a 127.0.0.1 address the test serves).
    pub fn scrape(mut self, job: impl Into<String>, target: impl Into<String>) -> Self {
        self.scrapes.push((job.into(), target.into()));
        self
    }

    /// Sets the scrape interval (default 1 s). The scrape timeout follows it.
    pub fn scrape_interval(mut self, every: Duration) -> Self {
        self.scrape_interval = every;
        self
    }

    /// Writes the config, backfills, starts the server and waits until `/-/ready` says so.
    /// Panics with the reason (and the server's log) when it cannot.
    pub fn start(self) -> Prometheus {
        let binary = find_binary("CANARYD_PROMETHEUS", "prometheus");
        let dir = temp_dir();
        fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        fs::write(dir.join("prometheus.yml"), self.config_yaml())
            .unwrap_or_else(|e| panic!("cannot write the Prometheus config: {e}"));
        let mut prometheus = Prometheus {
            child: None,
            port: 0,
            dir,
            binary,
        };
        for text in &self.backfills {
            prometheus.backfill(text);
        }
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            prometheus.port = free_port();
            match prometheus.launch() {
                Ok(()) => return prometheus,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("Prometheus did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    fn config_yaml(&self) -> String {
        let every = format!("{}ms", self.scrape_interval.as_millis().max(1));
        let mut yaml = format!(
            "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n  \
             evaluation_interval: {every}\n"
        );
        if !self.scrapes.is_empty() {
            yaml.push_str("scrape_configs:\n");
            for (job, target) in &self.scrapes {
                yaml.push_str(&format!(
                    "  - job_name: {job:?}\n    static_configs:\n      - targets: [{target:?}]\n"
                ));
            }
        }
        yaml
    }
}

impl Prometheus {
    /// A builder with no data and no scrape jobs.
    pub fn builder() -> PrometheusBuilder {
        PrometheusBuilder {
            backfills: Vec::new(),
            scrapes: Vec::new(),
            scrape_interval: Duration::from_secs(1),
        }
    }

    /// The base URL, `http://127.0.0.1:PORT`, to give to `PrometheusConfig::url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is up (it may still be starting).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s). Its port then refuses connections.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let graceful = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while graceful && Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            sleep(POLL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same port with the same data, and waits until ready.
    pub fn restart(&mut self) {
        self.stop();
        // The port was free a moment ago; allow a few tries in case it lingers.
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.launch() {
                Ok(()) => return,
                Err(failure) => {
                    last_failure = failure;
                    sleep(Duration::from_millis(500));
                }
            }
        }
        panic!(
            "Prometheus did not restart on port {}: {last_failure}",
            self.port
        );
    }

    /// Backfills OpenMetrics text into the data directory. Only while stopped (or before start):
    /// Prometheus loads the new blocks when it starts.
    pub fn backfill(&mut self, openmetrics: &str) {
        assert!(
            self.child.is_none(),
            "backfill only a stopped Prometheus: call stop() first, then restart()"
        );
        let promtool = find_binary("CANARYD_PROMTOOL", "promtool");
        let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
        let file = self.dir.join(format!("backfill-{n}.om"));
        let mut text = openmetrics.trim_end().to_string();
        if !text.ends_with("# EOF") {
            text.push_str("\n# EOF");
        }
        text.push('\n');
        fs::write(&file, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        let output = Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&file)
            .arg(self.dir.join("data"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
        assert!(
            output.status.success(),
            "promtool could not backfill {}:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// A blocking GET of `path_and_query` (already encoded); the status and body.
    pub fn get(&self, path_and_query: &str) -> Result<(u16, String), String> {
        http_get(self.port, path_and_query)
    }

    /// The raw JSON of an instant query at the current time.
    pub fn instant_query_json(&self, query: &str) -> Result<String, String> {
        let (status, body) = self.get(&format!("/api/v1/query?query={}", percent_encode(query)))?;
        if status == 200 {
            Ok(body)
        } else {
            Err(format!("HTTP {status}: {body}"))
        }
    }

    /// Waits until an instant query of `query` has a non-empty result (a scrape landed), at most
    /// `timeout`. Returns whether it did.
    pub fn wait_for_data(&self, query: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(body) = self.instant_query_json(query)
                && !body.contains("\"result\":[]")
            {
                return true;
            }
            sleep(POLL);
        }
        false
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("prometheus.log")
    }

    /// Starts the process on `self.port` and waits for `/-/ready`.
    fn launch(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("cannot open the log file: {e}"))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot open the log file: {e}"))?;
        let child = Command::new(&self.binary)
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg("--storage.tsdb.retention.time=100y")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if !self.is_running() {
                self.child = None;
                return Err(format!(
                    "it exited on port {}; its log ends with:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            if matches!(self.get("/-/ready"), Ok((200, _))) {
                return Ok(());
            }
            sleep(POLL);
        }
        self.stop();
        Err(format!(
            "not ready within {READY_TIMEOUT:?} on port {}; its log ends with:\n{}",
            self.port,
            self.log_tail()
        ))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The binary from `env_var`, else `/usr/bin/NAME`, else NAME on the PATH; panics with the install
/// command when none exists, so a machine without Prometheus fails loudly instead of skipping.
fn find_binary(env_var: &str, name: &str) -> PathBuf {
    let install = "these tests need a real Prometheus. Install it with \
                   `apt-get install prometheus` (the Debian package ships both `prometheus` and \
                   `promtool`)";
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var} points at {}, which does not exist: {install}, or fix {env_var}.",
            path.display()
        );
        return path;
    }
    let usual = Path::new("/usr/bin").join(name);
    if usual.is_file() {
        return usual;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "`{name}` was not found in /usr/bin or on the PATH: {install}, or point {env_var} at \
             the binary."
        )
    })
}

fn temp_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "canaryd-prometheus-{}-{}-{nanos}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

/// Percent-encodes everything but unreserved characters, for a URL query value.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal HTTP/1.0 GET (no chunked answers), bounded by 2 s to connect and 10 s to answer.
fn http_get(port: u16, path_and_query: &str) -> Result<(u16, String), String> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}
