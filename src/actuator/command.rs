//! The command actuator: runs a configured program to set the weight.
//!
//! This file owns running the program: an argv list (never a shell string), the change passed in
//! `CANARYD_ROLLOUT`, `CANARYD_STAGE`, `CANARYD_WEIGHT`, `CANARYD_PREVIOUS_WEIGHT`,
//! `CANARYD_REASON` and `CANARYD_IDEMPOTENCY_KEY`, a timeout after which the program and everything
//! it started (its process group) are killed, the exit code checked, and stdout/stderr captured,
//! logged truncated, and quoted (tail of stderr) in errors. Exit code 75 (`EX_TEMPFAIL`) marks a
//! failure as retryable. It does not retry: the runner decides.

use super::{
    Actuator, ActuatorError, ActuatorFuture, Failure, WeightChange, check_weight, duration_str,
    truncate_tail,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

/// Bytes of each output stream kept in memory (the last ones).
const CAPTURE_BYTES: usize = 64 * 1024;
/// Bytes of each output stream written to the log.
const LOG_BYTES: usize = 2048;
/// Bytes of stderr quoted in an error.
const STDERR_TAIL_BYTES: usize = 1024;
/// How long to wait for the output pipes to close once the program has exited or been killed
/// (a grandchild that left the process group may hold them open).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The environment variables every run receives; configured `env` may not override them.
pub const CHANGE_VARIABLES: [&str; 6] = [
    "CANARYD_ROLLOUT",
    "CANARYD_STAGE",
    "CANARYD_WEIGHT",
    "CANARYD_PREVIOUS_WEIGHT",
    "CANARYD_REASON",
    "CANARYD_IDEMPOTENCY_KEY",
];

/// `[actuators.NAME] kind = "command"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The program and its arguments, e.g. `["/usr/local/bin/set-weight", "--cluster", "eu"]`.
    pub argv: Vec<String>,
    /// The program is killed after this long.
    #[serde(default = "default_timeout", with = "duration_str")]
    pub timeout: Duration,
    /// Extra environment variables, added to the daemon's own.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl CommandConfig {
    /// A config running `argv` with the default timeout and no extra environment.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(argv: I) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            timeout: default_timeout(),
            env: BTreeMap::new(),
        }
    }

    pub(crate) fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match self.argv.first() {
            None => problems.push(
                "argv is empty; give the program and its arguments, e.g. \
                 argv = [\"/usr/local/bin/set-weight\"]"
                    .to_owned(),
            ),
            Some(program) if program.is_empty() => {
                problems.push("argv[0] (the program) is empty".to_owned())
            }
            Some(_) => {}
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            problems.push("argv contains a NUL byte".to_owned());
        }
        if self.timeout.is_zero() {
            problems.push("timeout must be above zero".to_owned());
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                problems.push(format!("env `{key}` is not a valid environment variable"));
            } else if CHANGE_VARIABLES.contains(&key.as_str()) {
                problems.push(format!(
                    "env `{key}` is set by canaryd for every run and cannot be configured"
                ));
            }
        }
        problems
    }
}

/// Runs a program for each weight change.
#[derive(Debug, Clone)]
pub struct CommandActuator {
    name: String,
    config: CommandConfig,
}

impl CommandActuator {
    /// `config` should have passed validation ([`super::validate`]); an empty argv fails each run.
    pub fn new(name: &str, config: &CommandConfig) -> Self {
        Self {
            name: name.to_owned(),
            config: config.clone(),
        }
    }

    async fn run(&self, change: &WeightChange) -> Result<(), Failure> {
        check_weight(change)?;
        let program = self
            .config
            .argv
            .first()
            .ok_or_else(|| Failure::Invalid("argv is empty".to_owned()))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(&self.config.argv[1..])
            .envs(&self.config.env)
            .env("CANARYD_ROLLOUT", &change.rollout)
            .env("CANARYD_STAGE", &change.stage)
            .env("CANARYD_WEIGHT", change.weight.to_string())
            .env(
                "CANARYD_PREVIOUS_WEIGHT",
                change.previous_weight.to_string(),
            )
            .env("CANARYD_REASON", &change.reason)
            .env("CANARYD_IDEMPOTENCY_KEY", &change.idempotency_key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own process group, so a timeout kills what a script started too.
        #[cfg(unix)]
        command.process_group(0);

        let mut child = command.spawn().map_err(|source| Failure::Spawn {
            program: program.clone(),
            source,
        })?;
        let stdout = capture(child.stdout.take());
        let stderr = capture(child.stderr.take());

        let waited = tokio::time::timeout(self.config.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => Some(status),
            Ok(Err(source)) => {
                kill(&mut child).await;
                return Err(Failure::Io {
                    what: "could not wait for",
                    path: program.into(),
                    source,
                });
            }
            Err(_elapsed) => {
                kill(&mut child).await;
                None
            }
        };
        let stdout = collect(stdout).await;
        let stderr = collect(stderr).await;
        self.log_output(change, &stdout, &stderr);

        match status {
            None => Err(Failure::CommandTimeout {
                program: program.clone(),
                after: self.config.timeout,
            }),
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(Failure::CommandFailed {
                program: program.clone(),
                code: status.code(),
                status: describe(status),
                stderr_tail: match truncate_tail(stderr.trim(), STDERR_TAIL_BYTES) {
                    tail if tail.is_empty() => "(empty)".to_owned(),
                    tail => tail,
                },
            }),
        }
    }

    fn log_output(&self, change: &WeightChange, stdout: &str, stderr: &str) {
        if !stdout.trim().is_empty() {
            tracing::info!(
                actuator = %self.name, rollout = %change.rollout,
                stdout = %truncate_tail(stdout.trim(), LOG_BYTES),
                "The weight command wrote to stdout."
            );
        }
        if !stderr.trim().is_empty() {
            tracing::warn!(
                actuator = %self.name, rollout = %change.rollout,
                stderr = %truncate_tail(stderr.trim(), LOG_BYTES),
                "The weight command wrote to stderr."
            );
        }
    }
}

/// Kills the child's process group (and the child), then reaps it.
async fn kill(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        // SAFETY: kill(2) with a negative pid signals the process group the child leads (it was
        // started with process_group(0)); it touches no memory.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    if let Err(e) = child.kill().await {
        tracing::warn!(error = %e, "Could not kill the weight command.");
    }
}

fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    format!("failed ({status})")
}

/// Reads a pipe to its end in the background, keeping the last [`CAPTURE_BYTES`].
fn capture<R: AsyncRead + Unpin + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut kept = Vec::new();
        let Some(mut pipe) = pipe else {
            return kept;
        };
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * CAPTURE_BYTES {
                        kept.drain(..kept.len() - CAPTURE_BYTES);
                    }
                }
            }
        }
        if kept.len() > CAPTURE_BYTES {
            kept.drain(..kept.len() - CAPTURE_BYTES);
        }
        kept
    })
}

/// The captured text, waiting at most [`DRAIN_GRACE`] for the pipe to close.
async fn collect(task: JoinHandle<Vec<u8>>) -> String {
    let abort = task.abort_handle();
    match tokio::time::timeout(DRAIN_GRACE, task).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => {
            abort.abort();
            "(output not collected: the pipe stayed open)".to_owned()
        }
    }
}

impl Actuator for CommandActuator {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "command"
    }

    fn set_weight<'a>(&'a self, change: &'a WeightChange) -> ActuatorFuture<'a> {
        Box::pin(async move {
            self.run(change)
                .await
                .map_err(|failure| ActuatorError::new(self, change, failure))?;
            tracing::info!(
                actuator = %self.name, rollout = %change.rollout, stage = %change.stage,
                weight = change.weight, "The weight command succeeded."
            );
            Ok(())
        })
    }
}
