//! A real Prometheus for integration tests: started from the Debian package's binary on a free
//! 127.0.0.1 port with its own temporary data directory, and killed (directory removed) on drop.
//!
//! Include it once per test binary (in its `main.rs`, or in a single-file test) with:
//!
//! ```ignore
//! #[path = "../support/prometheus.rs"]
//! mod prometheus_support;
//! use prometheus_support::Prometheus;
//! ```
//!
//! **One per binary** ([`shared`]): the tests of a binary that only read share one server,
//! started on first use and killed when the binary exits, so a binary starts one Prometheus
//! instead of one per test. They keep out of each other's data by names: a backfilled history
//! only read, and each test's own scrape job ([`Prometheus::add_target`]) and metric names.
//! Tests that stop or restart the server, or count its requests, start their own.
//!
//! Three ways to give it data:
//! - **Backfill** (`Prometheus::builder().backfill(openmetrics_text)`): the text is turned into TSDB
//!   blocks by `promtool tsdb create-blocks-from openmetrics` before the server starts, so history
//!   exists at once. Timestamps are unix seconds and may be of any age (retention is set to 100
//!   years and Prometheus 2.39+ merges overlapping blocks by itself, so no extra flag is needed).
//!   A trailing `# EOF` line is added when missing.
//! - **Scrape** (`.scrape("job", "127.0.0.1:PORT")`): a scrape job pointing at an address the test
//!   serves, every second (`.scrape_interval(..)` to change it). `wait_for_data` waits, bounded,
//!   until a query has an answer.
//! - **Discovered targets** (`prometheus.add_target("job", "127.0.0.1:PORT")`): a scrape job added
//!   to a running server, shared or not, through file discovery; scraped until the returned
//!   guard is dropped. Prometheus applies discovered changes at most every 5 s, so the first
//!   scrape takes a few seconds more than a configured job's.
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
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
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
    die_with_thread: bool,
    rule_files: Vec<PathBuf>,
}

/// A running (or stopped) Prometheus owned by one test.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    binary: PathBuf,
    die_with_thread: bool,
}

/// A scrape target added to a running Prometheus by [`Prometheus::add_target`]; dropping it
/// removes the target (its series then go stale).
#[derive(Debug)]
pub struct DiscoveredTarget {
    file: PathBuf,
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

    /// Loads the alerting (or recording) rules of `path`, evaluated every scrape interval.
    pub fn rule_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rule_files.push(path.into());
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
        for sub in ["data", "targets"] {
            fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        fs::write(dir.join("prometheus.yml"), self.config_yaml(&dir))
            .unwrap_or_else(|e| panic!("cannot write the Prometheus config: {e}"));
        let mut prometheus = Prometheus {
            child: None,
            port: 0,
            dir,
            binary,
            die_with_thread: self.die_with_thread,
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

    fn config_yaml(&self, dir: &Path) -> String {
        let every = format!("{}ms", self.scrape_interval.as_millis().max(1));
        let mut yaml = format!(
            "global:\n  scrape_interval: {every}\n  scrape_timeout: {every}\n  \
             evaluation_interval: {every}\n"
        );
        if !self.rule_files.is_empty() {
            yaml.push_str("rule_files:\n");
            for file in &self.rule_files {
                yaml.push_str(&format!("  - {:?}\n", file.display().to_string()));
            }
        }
        // The targets of `add_target`, each file naming its own job; files are watched, and the
        // refresh is a fallback.
        let discovered = dir.join("targets").join("*.json");
        yaml.push_str(&format!(
            "scrape_configs:\n  - job_name: \"discovered\"\n    file_sd_configs:\n      \
             - files: [{:?}]\n        refresh_interval: 1s\n",
            discovered.display().to_string()
        ));
        for (job, target) in &self.scrapes {
            yaml.push_str(&format!(
                "  - job_name: {job:?}\n    static_configs:\n      - targets: [{target:?}]\n"
            ));
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
            die_with_thread: false,
            rule_files: Vec::new(),
        }
    }

    /// Starts scraping `target` (`host:port`, a 127.0.0.1 address the test serves) as job `job`,
    /// on this running server, until the returned guard is dropped. `job` must be unique among
    /// the targets added to this server (on a [`shared`] one: across the binary's tests); panics
    /// when it is taken. The first scrape lands within about 5 s plus the scrape interval:
    /// `wait_for_data` for it.
    pub fn add_target(&self, job: &str, target: &str) -> DiscoveredTarget {
        assert!(
            !job.is_empty() && job.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "a discovered job name is letters, digits and `_` (it names a file): {job:?}"
        );
        let targets = self.dir.join("targets");
        let file = targets.join(format!("{job}.json"));
        assert!(
            !file.exists(),
            "the job {job:?} already has a target on this Prometheus"
        );
        let group = format!("[{{\"targets\": [{target:?}], \"labels\": {{\"job\": {job:?}}}}}]\n");
        // Written aside and renamed, so Prometheus never reads half a file.
        let partial = targets.join(format!("{job}.partial"));
        fs::write(&partial, group)
            .and_then(|()| fs::rename(&partial, &file))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        DiscoveredTarget { file }
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
        let mut command = Command::new(&self.binary);
        command
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
            .stderr(log_err);
        if self.die_with_thread {
            // SAFETY: between fork and exec the closure only makes one async-signal-safe system
            // call, allocating nothing and taking no lock.
            unsafe {
                command.pre_exec(|| {
                    // Killed when the thread that started it ends, which for the shared server
                    // is when the test binary exits, however it exits.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
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

impl Drop for DiscoveredTarget {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.file);
    }
}

/// The shared server's process and directory, for the cleanup at exit.
static SHARED_PROCESS: Mutex<Option<(Child, PathBuf)>> = Mutex::new(None);

/// The Prometheus shared by the tests of this binary, started on first use with what `build`
/// returns (and with nothing more: `build` is a property of the binary, like a fixture file, so
/// every caller in a binary passes the same one). A failed start fails the calling test with
/// the reason, and the next caller tries again. Tests only read from it and add their own
/// targets ([`Prometheus::add_target`]); it cannot be stopped or restarted. It is killed, and its
/// directory removed, when the test binary exits; if the binary is killed instead, the kernel
/// kills it too.
pub fn shared(build: fn() -> PrometheusBuilder) -> &'static Prometheus {
    static SHARED: OnceLock<Prometheus> = OnceLock::new();
    SHARED.get_or_init(|| {
        // Started from a thread that lives as long as the binary: the server's death signal is
        // tied to the thread that started it, and test threads end with their test.
        let (started, receive) = mpsc::channel();
        std::thread::Builder::new()
            .name("shared-prometheus".into())
            .spawn(move || {
                let builder = PrometheusBuilder {
                    die_with_thread: true,
                    ..build()
                };
                let start = std::panic::catch_unwind(move || builder.start());
                let running = start.is_ok();
                let _ = started.send(start);
                if running {
                    loop {
                        std::thread::park();
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot start a thread for the shared Prometheus: {e}"));
        let mut prometheus = match receive.recv() {
            Ok(Ok(prometheus)) => prometheus,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("the shared Prometheus's thread ended without a word"),
        };
        // The process and directory are the exit handler's now: a static is never dropped.
        if let Some(child) = prometheus.child.take() {
            let dir = prometheus.dir.clone();
            *SHARED_PROCESS.lock().unwrap_or_else(|e| e.into_inner()) = Some((child, dir));
            // SAFETY: registers a plain function; it runs once, at exit.
            unsafe { libc::atexit(stop_shared) };
        }
        prometheus
    })
}

/// Kills the shared server and removes its directory when the test binary exits.
extern "C" fn stop_shared() {
    let taken = SHARED_PROCESS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some((mut child, dir)) = taken {
        let _ = child.kill();
        let _ = child.wait();
        let _ = fs::remove_dir_all(dir);
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
/// The `promtool` binary (`CANARYD_PROMTOOL`, else `/usr/bin/promtool`); panics saying how to
/// install it when missing.
pub fn promtool() -> PathBuf {
    find_binary("CANARYD_PROMTOOL", "promtool")
}

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
