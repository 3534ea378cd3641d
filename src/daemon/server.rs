//! The HTTP server's routes: `/healthz`, `/readyz`, `/metrics`, `GET /v1/rollouts`, the
//! emergency-stop endpoints and the builtin actuator's weight and assignment routes. [`router`]
//! returns a composable `Router` so the later operator API can merge its own routes; binding and
//! serving happen in `daemon::run`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{Shared, emergency};

/// Every route the daemon serves.
pub fn router(shared: Arc<Shared>) -> Router {
    let own = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/rollouts", get(rollouts))
        .route(
            "/v1/emergency-stop",
            get(emergency_status)
                .post(emergency_stop)
                .delete(emergency_clear),
        )
        .with_state(Arc::clone(&shared));
    own.merge(crate::actuator::builtin::routes(shared.table.clone()))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: store or rules not loaded yet\n",
        )
            .into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.metrics.render(&shared.statuses());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn rollouts(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({ "rollouts": shared.statuses() })).into_response()
}

async fn emergency_status(State(shared): State<Arc<Shared>>) -> Response {
    let e = shared.emergency.borrow().clone();
    Json(json!({ "active": e.active, "reason": e.reason })).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopRequest {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Emergency endpoints answer only loopback peers unless `server.remote_emergency_stop` is set.
fn refuse_remote(shared: &Shared, peer: SocketAddr) -> Option<Response> {
    if peer.ip().is_loopback() || shared.config.server.remote_emergency_stop {
        return None;
    }
    Some(error(
        StatusCode::FORBIDDEN,
        format!(
            "emergency stop is accepted from loopback only (you are {}); set \
             server.remote_emergency_stop = true to allow other hosts",
            peer.ip()
        ),
    ))
}

fn parse_request(body: &str) -> Result<StopRequest, Box<Response>> {
    if body.trim().is_empty() {
        return Ok(StopRequest::default());
    }
    serde_json::from_str(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the body must be JSON like {{\"reason\": \"...\", \"by\": \"alice\"}}: {e}"),
        ))
    })
}

async fn emergency_stop(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: String,
) -> Response {
    if let Some(refused) = refuse_remote(&shared, peer) {
        return refused;
    }
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let reason = request
        .reason
        .unwrap_or_else(|| "emergency stop requested over the API".into());
    let by = request.by.unwrap_or_else(|| format!("api {}", peer.ip()));
    match emergency::engage(&shared, reason, by).await {
        Ok(()) => Json(json!({ "active": true })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn emergency_clear(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: String,
) -> Response {
    if let Some(refused) = refuse_remote(&shared, peer) {
        return refused;
    }
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let by = request.by.unwrap_or_else(|| format!("api {}", peer.ip()));
    match emergency::clear(&shared, by).await {
        Ok(()) => Json(json!({ "active": false })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}
