//! The HTTP server's routes: the daemon's own, `/healthz`, `/readyz` (503 while starting or once
//! the state database failed, with the cause), `/metrics` and the builtin actuator's weight and
//! assignment routes, merged with the faces' router (the operator API under `/v1`, the status
//! pages), which the daemon is handed already built ([`super::Faces`]) and does not look into.
//! Every one of them, the faces' too, is behind the one access policy ([`super::access`]).
//! Binding and serving happen in `daemon::run`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Shared;

/// Every route the daemon serves: its own and the `faces`'.
pub fn router(shared: Arc<Shared>, faces: Router) -> Router {
    let own = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::clone(&shared));
    own.merge(faces)
        .merge(crate::actuator::builtin::routes(shared.table.clone()))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            super::access::guard,
        ))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if let Some(fault) = shared.store.fault() {
        let why = super::storage::explain(&fault);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response();
    }
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
    match shared.store.call(|s| s.outbox_counts()).await {
        Ok(counts) => {
            let m = &shared.metrics;
            m.set("canaryd_notifications_pending", &[], counts.pending as f64);
            m.set("canaryd_notifications_sent_total", &[], counts.sent as f64);
            m.set(
                "canaryd_notifications_failed_total",
                &[],
                counts.failed as f64,
            );
            m.set(
                "canaryd_notifications_superseded_total",
                &[],
                counts.superseded as f64,
            );
        }
        Err(e) => tracing::warn!(error = %e, "Cannot count the notifications for /metrics."),
    }
    match shared.store.call(|s| s.size()).await {
        Ok(size) => {
            let m = &shared.metrics;
            m.set("canaryd_store_bytes", &[], size.bytes as f64);
            m.set("canaryd_store_free_bytes", &[], size.free_bytes as f64);
        }
        Err(e) => tracing::warn!(error = %e, "Cannot read the state database's size for /metrics."),
    }
    // Sent a page at a time as it is rendered (see `metrics::Pages`).
    let metrics = shared.metrics.clone();
    let pages =
        super::metrics::Pages::new(metrics, move |after, n| shared.statuses_after(after, n));
    let stream = futures_util::stream::unfold(pages, |mut pages| async move {
        pages
            .next_page()
            .map(|page| (Ok::<_, std::convert::Infallible>(page), pages))
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
