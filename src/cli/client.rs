//! The HTTP client the control commands share: where the daemon is (`--url`, `CANARYD_URL`),
//! the API token (`--token-file`, `CANARYD_TOKEN`; never a flag holding the token itself), one
//! request with a small runtime, and the exit codes. It owns the talking and the mapping of
//! failures to exit codes; what to ask and how to show it belongs to `control`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;

/// The daemon's address when neither `--url` nor `CANARYD_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9797";

/// Exit codes of the control commands.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The daemon refused (4xx: unknown rollout, bad token, not allowed now); its message is
    /// printed.
    pub const REFUSED: u8 = 1;
    /// Bad usage, or the token file cannot be read.
    pub const USAGE: u8 = super::super::USAGE_ERROR;
    /// The daemon cannot be reached.
    pub const UNREACHABLE: u8 = 4;
    /// The daemon failed (5xx) or answered something that is not its API.
    pub const DAEMON_ERROR: u8 = 5;
}

/// Tables for people, JSON (the API's answer as is) for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Where the daemon is and who we are.
#[derive(Debug, Clone, Args)]
pub struct Conn {
    /// The daemon's base URL [env: CANARYD_URL] [default: http://127.0.0.1:9797].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A file holding the API token (first line). Otherwise the token is read from the
    /// CANARYD_TOKEN environment variable. Reads on loopback need none.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// `table` for people, `json` for scripts: the API's answer on stdout, or a failure as one
    /// JSON object on stderr (`{"error", "kind", "status", "exit_code"}`), same exit codes.
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
}

/// Why a command ended without an answer to show; each kind has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The daemon refused (4xx).
    Refused,
    /// Bad usage, or the token file cannot be read.
    Usage,
    /// The daemon cannot be reached.
    Unreachable,
    /// The daemon failed (5xx) or answered something that is not its API.
    DaemonError,
}

impl FailureKind {
    /// The process exit code of this kind of failure.
    pub fn code(self) -> u8 {
        match self {
            FailureKind::Refused => exit::REFUSED,
            FailureKind::Usage => exit::USAGE,
            FailureKind::Unreachable => exit::UNREACHABLE,
            FailureKind::DaemonError => exit::DAEMON_ERROR,
        }
    }
}

/// Why a command ended without an answer to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    /// The daemon's HTTP status, when it answered.
    pub status: Option<u16>,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            status: None,
            message: message.into(),
        }
    }

    /// The failure as `--output json` prints it: `{"error", "kind", "status", "exit_code"}`.
    pub fn json(&self) -> Value {
        serde_json::json!({
            "error": self.message,
            "kind": self.kind,
            "status": self.status,
            "exit_code": self.kind.code(),
        })
    }

    /// Print the failure on stderr (a line for people, or one JSON object for scripts with
    /// `--output json`) and give its exit code.
    pub fn report(self, output: Output) -> ExitCode {
        match output {
            Output::Table => eprintln!("canaryd: {}", self.message),
            Output::Json => eprintln!("{}", self.json()),
        }
        ExitCode::from(self.kind.code())
    }
}

/// What a 401 adds: how to give the CLI a token.
fn unauthorized_hint(sent: bool) -> String {
    let what = match sent {
        true => "the token given was not accepted",
        false => "no token was given",
    };
    format!(
        "{what}: pass an admin token with --token-file PATH (the printed commands use {}) or \
         the CANARYD_TOKEN environment variable; `canaryd token new NAME --role admin` makes one \
         for the daemon's token file",
        crate::notify::command_line::TOKEN_FILE
    )
}

impl Conn {
    /// The base URL, without a trailing slash.
    pub fn base(&self) -> String {
        let url = self
            .url
            .clone()
            .or_else(|| std::env::var("CANARYD_URL").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        url.trim_end_matches('/').to_string()
    }

    /// The token, if one is given.
    pub fn token(&self) -> Result<Option<String>, Failure> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::new(
                    FailureKind::Usage,
                    format!("cannot read the token file {}: {e}", path.display()),
                )
            })?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                return Err(Failure::new(
                    FailureKind::Usage,
                    format!("the token file {} is empty", path.display()),
                ));
            }
            return Ok(Some(token));
        }
        Ok(std::env::var("CANARYD_TOKEN")
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }

    /// Send one request and give the answer's JSON, or the failure with its exit code.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let token = self.token()?;
        let url = format!("{}{path}", self.base());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::new(FailureKind::DaemonError, format!("cannot start: {e}")))?;
        runtime.block_on(send(method, &url, token, body))
    }
}

async fn send(
    method: reqwest::Method,
    url: &str,
    token: Option<String>,
    body: Option<Value>,
) -> Result<Value, Failure> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| {
            Failure::new(
                FailureKind::DaemonError,
                format!("cannot build a client: {e}"),
            )
        })?;
    let mut request = client.request(method, url);
    let sent_token = token.is_some();
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| {
        Failure::new(
            FailureKind::Unreachable,
            format!(
                "cannot reach the daemon at {url}: {e}; is it running? (--url or CANARYD_URL \
                 says where)"
            ),
        )
    })?;
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        Failure::new(
            FailureKind::Unreachable,
            format!("the daemon's answer was cut off: {e}"),
        )
    })?;
    let json: Result<Value, _> = serde_json::from_str(&text);
    let message = || match &json {
        Ok(v) => v
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| text.trim().to_string(), str::to_string),
        Err(_) => text.trim().to_string(),
    };
    if status.is_client_error() {
        let mut message = format!("{} ({})", message(), status.as_u16());
        if status == reqwest::StatusCode::UNAUTHORIZED {
            message = format!("{message}; {}", unauthorized_hint(sent_token));
        }
        return Err(Failure {
            kind: FailureKind::Refused,
            status: Some(status.as_u16()),
            message,
        });
    }
    if !status.is_success() {
        return Err(Failure {
            kind: FailureKind::DaemonError,
            status: Some(status.as_u16()),
            message: format!("the daemon failed: {} ({})", message(), status.as_u16()),
        });
    }
    json.map_err(|e| {
        Failure::new(
            FailureKind::DaemonError,
            format!("{url} did not answer with JSON ({e}); is it canaryd?"),
        )
    })
}

/// Lay out rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let t = table(
            &["check", "verdict"],
            &[vec!["latency-p99".into(), "fail".into()]],
        );
        assert_eq!(t, "check        verdict\nlatency-p99  fail\n");
    }
}
