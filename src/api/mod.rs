//! The operator HTTP API under `/v1`: read rollouts, their plan's progress, history, analyses
//! and the baseline-vs-canary comparison; give commands (start, approve, pause, resume, promote,
//! rollback, abort) and the emergency stop. It owns the routes, request checking, authentication
//! and the JSON shapes ([`view`]); it decides nothing about rollouts: a command goes
//! through the rollout's mailbox to its runner and the state machine, and the answer says what
//! became of it (200 with the new phase and weight, or the typed [`CommandError`], whose kinds
//! map to statuses in one place: `From<CommandError> for ApiError`).
//!
//! # Rules
//! - Every error is JSON `{"error": "..."}`: 400 bad request (with what is wrong), 401 no or an
//!   unknown token, 403 a read-only token on a mutation, 404 unknown rollout, 405 wrong method,
//!   409 refused by the state machine, 413 a body over [`BODY_LIMIT`], 503 when the command
//!   could not be recorded (the state database failed: never a 409) or the rollout's task cannot
//!   take it now, 504 no answer in time.
//! - Who may call what is decided before a handler runs, by the server's one access policy
//!   (`daemon::access`, over every route): mutations need an admin token (`Authorization:
//!   Bearer ...`), whose [`Caller`] it leaves on the request and whose name is recorded as the
//!   operator in the audit trail. No handler here checks a token.
//! - A command's body is `{"reason": "..."}`: required, not blank, at most [`MAX_REASON`]
//!   characters, no other field.

pub mod view;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::daemon::{CommandError, Control, Order};
use crate::rollout::{Command, RolloutState, TriggeredBy};
use crate::store::{Cursor, MAX_PAGE, Page, ReadOnly, StoreError};
use crate::tokens::Caller;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 16 * 1024;
/// The longest reason accepted, in characters.
pub const MAX_REASON: usize = 1000;
/// History entries per page when `limit` is not given.
const DEFAULT_HISTORY: usize = 50;
/// Analyses per page when `limit` is not given.
const DEFAULT_ANALYSES: usize = 10;

/// An error answer: a status and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"canaryd\""),
            );
        }
        resp
    }
}

/// The one place a command's outcome becomes an HTTP status.
impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let status = match &e {
            CommandError::Refused(_)
            | CommandError::NoRule { .. }
            | CommandError::StopFile { .. } => StatusCode::CONFLICT,
            CommandError::Unknown { .. } => StatusCode::NOT_FOUND,
            CommandError::Store { .. }
            | CommandError::Busy { .. }
            | CommandError::Stopped { .. } => StatusCode::SERVICE_UNAVAILABLE,
            CommandError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        };
        ApiError::new(status, e.to_string())
    }
}

/// A read that failed in the store: 503 when the database itself failed, 500 otherwise.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = if e.is_storage_failure() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

/// The API's routes on the daemon's handle, for the daemon to serve (see `cli::serve::routes`).
pub fn router(control: Control) -> Router {
    let mut rollout = Router::new()
        .route("/v1/rollouts", get(list))
        .route("/v1/rollouts/{name}", get(one))
        .route("/v1/rollouts/{name}/history", get(history))
        .route("/v1/rollouts/{name}/runs", get(runs))
        .route("/v1/rollouts/{name}/analyses", get(analyses))
        .route("/v1/rollouts/{name}/comparison", get(compare))
        .route(
            "/v1/emergency-stop",
            get(emergency_status)
                .post(emergency_stop)
                .delete(emergency_clear),
        );
    for (path, command) in COMMANDS {
        let command = *command;
        rollout = rollout.route(
            path,
            post(
                move |state: State<Control>,
                      caller: Extension<Caller>,
                      name: Path<String>,
                      body: Result<Bytes, BytesRejection>| {
                    give(state, caller, name, body, command)
                },
            ),
        );
    }
    rollout
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this method is not allowed here: reads are GET, commands are POST, and \
                 /v1/emergency-stop takes GET, POST and DELETE",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(control)
}

const COMMANDS: &[(&str, Command)] = &[
    ("/v1/rollouts/{name}/start", Command::Start),
    ("/v1/rollouts/{name}/approve", Command::Approve),
    ("/v1/rollouts/{name}/pause", Command::Pause),
    ("/v1/rollouts/{name}/resume", Command::Resume),
    ("/v1/rollouts/{name}/promote", Command::Promote),
    ("/v1/rollouts/{name}/rollback", Command::Rollback),
    ("/v1/rollouts/{name}/abort", Command::Abort),
];

/// A command's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    reason: String,
    /// `start` only: the canary version of the new run.
    #[serde(default)]
    canary: Option<String>,
}

/// The longest canary version `start` takes.
pub const MAX_CANARY: usize = 128;

/// Check a command's body: JSON `{"reason": "..."}` within the limits.
pub fn parse_reason(body: &[u8]) -> Result<String, String> {
    let (reason, canary) = parse_command(body)?;
    match canary {
        Some(_) => Err("`canary` is only taken by `start`".to_string()),
        None => Ok(reason),
    }
}

/// Check a command's body: JSON `{"reason": "...", "canary": "..."}` (`canary` optional), within
/// the limits. A canary version is substituted into the rule's queries, so it is limited to
/// letters, digits and `.`, `_`, `-`, `+`, `:`, `/`, `@`.
pub fn parse_command(body: &[u8]) -> Result<(String, Option<String>), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the body must be JSON like {\"reason\": \"why\"}; it is empty".to_string());
    }
    let parsed: CommandBody = serde_json::from_slice(body)
        .map_err(|e| format!("the body must be JSON like {{\"reason\": \"why\"}}: {e}"))?;
    if let Some(canary) = &parsed.canary {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._-+:/@".contains(c);
        if canary.is_empty() || canary.len() > MAX_CANARY || !canary.chars().all(allowed) {
            return Err(format!(
                "`canary` must be 1 to {MAX_CANARY} letters, digits or `._-+:/@` (it goes into \
                 the rule's queries); got {:?}",
                canary.chars().take(MAX_CANARY + 1).collect::<String>()
            ));
        }
    }
    let reason = parsed.reason.trim();
    if reason.is_empty() {
        return Err("`reason` is empty: say why, for the audit trail".to_string());
    }
    let chars = reason.chars().count();
    if chars > MAX_REASON {
        return Err(format!(
            "`reason` is {chars} characters long; at most {MAX_REASON} are accepted"
        ));
    }
    Ok((reason.to_string(), parsed.canary))
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("the body is larger than {BODY_LIMIT} bytes")
        } else {
            rejection.body_text()
        };
        ApiError::new(status, message)
    })
}

fn not_found(name: &str) -> ApiError {
    CommandError::Unknown {
        rollout: name.to_string(),
    }
    .into()
}

/// The rollout must be known (loaded, or stored from before).
fn known(control: &Control, name: &str) -> Result<(), ApiError> {
    if control.knows(name) {
        Ok(())
    } else {
        Err(not_found(name))
    }
}

async fn list(State(control): State<Control>) -> ApiResult {
    Ok(Json(json!({ "rollouts": control.statuses() })).into_response())
}

async fn one(State(control): State<Control>, Path(name): Path<String>) -> ApiResult {
    known(&control, &name)?;
    let key = name.clone();
    let (stored, started_at, last) =
        control
            .read(move |store| {
                let stored = store.rollout::<RolloutState>(&key)?;
                let run = stored.as_ref().map(|s| s.state.run.number);
                // The newest start of the current run: walk its history back until one is found.
                let mut started_at = None;
                let mut cursor = None;
                loop {
                    let page = store.audit_page_of(&key, run, cursor, MAX_PAGE)?;
                    if let Some(e) = page.items.iter().find(|e| {
                        matches!(e.action.as_str(), "run-started" | "started" | "retried")
                    }) {
                        started_at = Some(e.at);
                        break;
                    }
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                let last = store
                    .analyses_page_of(&key, run, None, 1)?
                    .items
                    .into_iter()
                    .next();
                Ok::<_, StoreError>((stored, started_at, last.map(|a| a.at)))
            })
            .await?;
    let rules = control.rules();
    let rule = rules.get(&name);
    let rule_file_problems = rules.rule_file_problems(&name);
    let (state, updated_at) = match stored {
        Some(s) => (s.state, Some(s.updated_at)),
        None => (RolloutState::default(), None),
    };
    let known = view::Known {
        started_at,
        updated_at,
        last_analysis_at: last,
    };
    let mut detail = view::detail(&name, &state, rule.as_deref(), known, control.now());
    detail.rule_file_problems = rule_file_problems;
    Ok(Json(detail).into_response())
}

/// `?limit=&cursor=&run=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<String>,
    cursor: Option<String>,
    /// A run number, `all`, or (left out) the current run.
    run: Option<String>,
}

/// Which run a history page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunFilter {
    Current,
    All,
    Number(u32),
}

impl RunFilter {
    /// The store's filter for rollout `name`: the current run is read from its state.
    fn resolve(self, store: &ReadOnly<'_>, name: &str) -> Result<Option<u32>, StoreError> {
        Ok(match self {
            RunFilter::All => None,
            RunFilter::Number(n) => Some(n),
            RunFilter::Current => Some(
                store
                    .rollout::<RolloutState>(name)?
                    .map_or(1, |s| s.state.run.number),
            ),
        })
    }
}

fn page_params(
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
    default: usize,
) -> Result<(usize, Option<Cursor>, RunFilter), ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query string ({}); use ?limit=N&cursor=C&run=R",
            e.body_text()
        ))
    })?;
    let run = match q.run.as_deref() {
        None | Some("") => RunFilter::Current,
        Some("all") => RunFilter::All,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if n >= 1 => RunFilter::Number(n),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "`run` = `{text}` must be a run number (1, 2, ...) or `all`"
                )));
            }
        },
    };
    let limit = match q.limit.as_deref() {
        None => default,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "`limit` = `{text}` must be a whole number from 1 to {MAX_PAGE}"
                )));
            }
        },
    };
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(str::parse::<Cursor>)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((limit, cursor, run))
}

/// A store read of one page of a rollout's rows of one run (or all): audit or analyses.
type ReadPage<T> =
    fn(&ReadOnly<'_>, &str, Option<u32>, Option<Cursor>, usize) -> Result<Page<T>, StoreError>;

/// One page of a rollout's history rows (`read`: audit or analyses) for the query's run.
async fn run_page<T: Send + 'static>(
    control: &Control,
    name: &str,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
    default: usize,
    read: ReadPage<T>,
) -> Result<Page<T>, ApiError> {
    let (limit, cursor, run) = page_params(query, default)?;
    let key = name.to_string();
    Ok(control
        .read(move |store| {
            let run = run.resolve(store, &key)?;
            read(store, &key, run, cursor, limit)
        })
        .await?)
}

async fn history(
    State(control): State<Control>,
    Path(name): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    known(&control, &name)?;
    let page = run_page(&control, &name, query, DEFAULT_HISTORY, |s, n, r, c, l| {
        s.audit_page_of(n, r, c, l)
    })
    .await?;
    let entries: Vec<view::HistoryEntry> = page.items.into_iter().map(Into::into).collect();
    Ok(Json(json!({
        "rollout": name,
        "entries": entries,
        "next_cursor": page.next.map(|c| c.to_string()),
    }))
    .into_response())
}

/// `GET /v1/rollouts/{name}/runs`: the rollout's runs, newest first.
async fn runs(State(control): State<Control>, Path(name): Path<String>) -> ApiResult {
    known(&control, &name)?;
    let key = name.clone();
    let runs = control
        .read(move |store| store.runs(&key))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "rollout": name, "runs": runs })).into_response())
}

async fn analyses(
    State(control): State<Control>,
    Path(name): Path<String>,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    known(&control, &name)?;
    let page = run_page(&control, &name, query, DEFAULT_ANALYSES, |s, n, r, c, l| {
        s.analyses_page_of(n, r, c, l)
    })
    .await?;
    let items: Vec<_> = page
        .items
        .into_iter()
        .map(|a| {
            json!({
                "id": a.id,
                "run": a.run,
                "at": a.at,
                "outcome": a.outcome,
                "score": a.score,
                "evidence": a.evidence,
            })
        })
        .collect();
    Ok(Json(json!({
        "rollout": name,
        "analyses": items,
        "next_cursor": page.next.map(|c| c.to_string()),
    }))
    .into_response())
}

async fn compare(State(control): State<Control>, Path(name): Path<String>) -> ApiResult {
    known(&control, &name)?;
    let key = name.clone();
    let latest = control
        .read(move |store| store.analyses_page(&key, None, 1))
        .await?
        .items
        .into_iter()
        .next();
    let Some(latest) = latest else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("rollout `{name}` has no analysis yet"),
        ));
    };
    let comparison = view::comparison(&latest).map_err(ApiError::internal)?;
    Ok(Json(comparison).into_response())
}

/// Give `command` to rollout `name` and wait for what became of it.
async fn give(
    State(control): State<Control>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
    command: Command,
) -> ApiResult {
    let body = body_bytes(body)?;
    known(&control, &name)?;
    let (reason, canary) = match command {
        Command::Start => parse_command(&body),
        _ => parse_reason(&body).map(|reason| (reason, None)),
    }
    .map_err(ApiError::bad_request)?;
    let order = Order {
        command,
        by: TriggeredBy::Operator(caller.name.clone()),
        reason,
        canary,
    };
    tracing::info!(rollout = %name, command = %command, by = %caller.name, "Command received over the API.");
    let status = control.command(&name, order).await?;
    Ok(Json(json!({
            "rollout": name,
            "command": command,
            "by": caller.name,
            "phase": status.phase,
            "stage": status.stage,
            "stage_name": status.stage_name,
            "weight": status.weight,
            "run": status.run,
            "canary": status.canary,
    }))
    .into_response())
}

async fn emergency_status(State(control): State<Control>) -> ApiResult {
    let e = control.emergency();
    let mut answer = json!({ "active": e.active, "reason": e.reason });
    // Who lifted the last stop and why, while none is in force (since the daemon started).
    if !e.active && !e.cleared_by.is_empty() {
        answer["cleared_by"] = json!(e.cleared_by);
        answer["cleared_reason"] = json!(e.cleared_reason);
    }
    Ok(Json(answer).into_response())
}

async fn emergency_stop(
    State(control): State<Control>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let reason = parse_reason(&body_bytes(body)?).map_err(ApiError::bad_request)?;
    control
        .engage_emergency(reason.clone(), caller.name.clone())
        .await?;
    Ok(Json(json!({ "active": true, "reason": reason, "by": caller.name })).into_response())
}

async fn emergency_clear(
    State(control): State<Control>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let reason = parse_reason(&body_bytes(body)?).map_err(ApiError::bad_request)?;
    tracing::warn!(by = %caller.name, reason = %reason, "Emergency stop clear requested over the API.");
    control
        .clear_emergency(caller.name.clone(), reason.clone())
        .await?;
    Ok(Json(json!({ "active": false, "reason": reason, "by": caller.name })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_command_error_has_one_status_and_a_store_failure_is_never_a_refusal() {
        let rollout = || "web".to_string();
        let cases = [
            (
                CommandError::Refused(crate::rollout::StepError::EmptyPlan),
                StatusCode::CONFLICT,
            ),
            (
                CommandError::NoRule { rollout: rollout() },
                StatusCode::CONFLICT,
            ),
            (
                CommandError::StopFile {
                    file: "/etc/canaryd/emergency-stop".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                CommandError::Unknown { rollout: rollout() },
                StatusCode::NOT_FOUND,
            ),
            (
                CommandError::Store {
                    message: "disk full".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                CommandError::Busy {
                    rollout: rollout(),
                    waiting: 64,
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                CommandError::Stopped { rollout: rollout() },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                CommandError::Timeout {
                    rollout: rollout(),
                    after: crate::daemon::control::COMMAND_TIMEOUT,
                },
                StatusCode::GATEWAY_TIMEOUT,
            ),
        ];
        for (error, status) in cases {
            let message = error.to_string();
            let answer = ApiError::from(error);
            assert_eq!(answer.status, status, "{message}");
            assert_eq!(answer.message, message);
        }
        let failed = StoreError::Failed {
            fault: crate::store::Fault::Deleted {
                file: "/var/lib/canaryd/canaryd.db".into(),
                rescued: None,
            },
        };
        let answer = ApiError::from(CommandError::from(failed));
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.message.contains("was deleted"), "{}", answer.message);
    }

    #[test]
    fn reasons_are_checked_with_a_message_saying_what_is_wrong() {
        assert_eq!(
            parse_reason(br#"{"reason": " deploy 42 "}"#).unwrap(),
            "deploy 42"
        );
        let cases: [(&[u8], &str); 5] = [
            (b"", "it is empty"),
            (b"pause please", "must be JSON"),
            (br#"{"reason": "x", "by": "bob"}"#, "unknown field `by`"),
            (br#"{}"#, "missing field `reason`"),
            (br#"{"reason": "  "}"#, "`reason` is empty"),
        ];
        for (body, want) in cases {
            let err = parse_reason(body).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        let long = format!("{{\"reason\": \"{}\"}}", "x".repeat(MAX_REASON + 1));
        assert!(
            parse_reason(long.as_bytes())
                .unwrap_err()
                .contains("at most 1000")
        );
    }
}
