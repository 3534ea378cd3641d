//! The status page: server-rendered HTML for people, no JavaScript (and a
//! [`CONTENT_SECURITY_POLICY`] that lets none run). `GET /` lists every rollout
//! (stage progress, phase, weight, last decision, time in stage, the emergency-stop banner,
//! notification counts) and refreshes itself every 10 s; `GET /rollouts/{name}` charts each
//! check's baseline and canary over the last analysis window with its threshold, shows the
//! latest verdicts with their evidence and pages through the audit trail with `?cursor=`.
//!
//! This module owns reading what the pages need (through the daemon's `Control`: statuses,
//! rules, store queries off the async threads) and the routes; [`overview`] and [`detail`] turn that into markup and [`chart`] draws the SVG, all
//! three pure. It only reads: it must never change a rollout, the store or the rules.
//!
//! - [`html`]: the page shell and shared formats (markup is [`crate::markup::Html`]).
//! - [`chart`]: inline SVG charts.
//! - [`overview`], [`detail`]: the two pages.
//! - [`moments`]: stage changes and failures marked on the charts.
//! - [`act`]: why a rollout waits, and the commands for its phase (complete, to run as printed).

pub mod act;
pub mod chart;
pub mod detail;
pub mod html;
pub mod moments;
pub mod overview;
pub mod runs;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::daemon::Control;
use crate::rollout::RolloutState;
use crate::rules::RolloutRule;
use crate::store::{Analysis, AuditEntry, Cursor, OutboxCounts, Page, RunRecord, StoreError};

/// The pages' `Content-Security-Policy`. They are server-rendered with no JavaScript: inline
/// styles (a `<style>` block and `style` attributes for the weight bars) and inline SVG are all
/// they use, so nothing else may load or run, should markup ever slip through unescaped.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Audit entries per history page.
pub const HISTORY_PAGE: usize = 20;
/// Analyses listed under "recent analyses".
pub const RECENT_ANALYSES: usize = 10;
/// Audit entries read to find a rollback's stage and the moments on the charts.
pub const RECENT_AUDIT: usize = 200;

/// Why a page could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("no rollout is named `{0}`")]
    UnknownRollout(String),
    #[error("`{0}` is not a history cursor; use the links on the page")]
    BadCursor(String),
    #[error("cannot read the state database: {0}")]
    Store(#[from] StoreError),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::UnknownRollout(_) => StatusCode::NOT_FOUND,
            WebError::BadCursor(_) => StatusCode::BAD_REQUEST,
            WebError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let heading = match self {
            WebError::UnknownRollout(_) => "Rollout not found",
            WebError::BadCursor(_) => "Bad request",
            WebError::Store(_) => "Something went wrong",
        };
        let body = crate::markup::html!(
            "<h1>{}</h1>\n<p class=\"card\">{}</p>\n<p><a href=\"/\">← All rollouts</a></p>\n",
            heading,
            self.to_string()
        );
        html_response(status, html::page(heading, &body, false))
    }
}

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// One rollout as the pages show it.
#[derive(Debug, Clone)]
pub struct RolloutView {
    pub name: String,
    /// Its rule, when a rule file for it is loaded.
    pub rule: Option<Arc<RolloutRule>>,
    /// Its stored state (a fresh one when it has never been stepped).
    pub state: RolloutState,
    /// The newest audit entry: the last decision and its reason.
    pub last: Option<AuditEntry>,
    /// For a rolled-back run, the stage it was rolled back from (see [`rolled_back_stage`]).
    pub rolled_back_stage: Option<usize>,
}

/// Audit actions of the emergency stop, which a finished run records without changing.
fn is_emergency(action: &str) -> bool {
    matches!(
        action,
        "emergency-stopped" | "emergency-cleared" | "ignored-during-emergency"
    )
}

/// A finished run (an earlier one, or the current one once it succeeded, rolled back or was
/// aborted) whose newest entry is the emergency stop's: its outcome is the entry before.
fn finished_by_emergency(run: &RunRecord, state: &RolloutState) -> bool {
    let finished = run.run != state.run.number || state.finished();
    finished && run.last_action.as_deref().is_some_and(is_emergency)
}

/// The stage a rolled-back run was rolled back from: the plan's stage at the weight its newest
/// `rolled-back` entry (among `audit`, newest first) left. `None` for another phase, or when
/// the entry or the stage cannot be found.
pub fn rolled_back_stage(
    state: &RolloutState,
    rule: Option<&RolloutRule>,
    audit: &[AuditEntry],
) -> Option<usize> {
    if !matches!(state.phase, crate::rollout::Phase::RolledBack { .. }) {
        return None;
    }
    let from = audit
        .iter()
        .find(|e| e.action == "rolled-back" && e.run == state.run.number)?
        .previous_weight?;
    rule?.plan.stages.iter().position(|s| s.weight == from)
}

/// The emergency stop as the pages show it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopView {
    pub active: bool,
    pub reason: String,
}

/// The routes of the status page on the daemon's handle, for the daemon to serve (see
/// `cli::serve::routes`).
pub fn routes(control: Control) -> Router {
    Router::new()
        .route("/", get(overview_page))
        .route("/rollouts/{name}", get(detail_page))
        .with_state(control)
}

fn stop_view(control: &Control) -> StopView {
    let e = control.emergency();
    StopView {
        active: e.active,
        reason: e.reason,
    }
}

async fn overview_page(State(control): State<Control>) -> Result<Response, WebError> {
    let rules = control.rules();
    let (rollouts, outbox) = control
        .read(move |store| {
            let stored = store.rollouts::<RolloutState>()?;
            let mut names: BTreeSet<String> = rules.rules.keys().cloned().collect();
            names.extend(stored.iter().map(|s| s.name.clone()));
            let mut views = Vec::with_capacity(names.len());
            for name in names {
                let state = stored
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.state.clone())
                    .unwrap_or_default();
                // A rolled-back rollout's page of history finds the stage it left; others need
                // only their last decision.
                let rolled_back = matches!(state.phase, crate::rollout::Phase::RolledBack { .. });
                let wanted = if rolled_back { HISTORY_PAGE } else { 1 };
                let recent = store.audit_page(&name, None, wanted)?.items;
                let rule = rules.get(&name);
                views.push(RolloutView {
                    rolled_back_stage: rolled_back_stage(&state, rule.as_deref(), &recent),
                    last: recent.into_iter().next(),
                    rule,
                    name,
                    state,
                });
            }
            let outbox: Option<OutboxCounts> = store
            .outbox_counts()
            .map_err(
                |e| tracing::warn!(error = %e, "Cannot count notifications for the status page."),
            )
            .ok();
            Ok::<_, WebError>((views, outbox))
        })
        .await?;
    let page = overview::render(&overview::Overview {
        rollouts: &rollouts,
        stop: &stop_view(&control),
        outbox,
        now: control.now(),
    });
    Ok(html_response(StatusCode::OK, page))
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    cursor: Option<String>,
    /// The run to show (the current one when left out).
    run: Option<u32>,
}

async fn detail_page(
    State(control): State<Control>,
    Path(name): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Response, WebError> {
    let cursor = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(text) => Some(
            text.parse::<Cursor>()
                .map_err(|_| WebError::BadCursor(text.to_string()))?,
        ),
    };
    let rules = control.rules();
    let rule = rules.get(&name);
    let rule_file_problems = rules.rule_file_problems(&name);
    drop(rules);
    let asked = query.run;
    let (view, analyses, history, recent, runs, shown) = control
        .read(move |store| {
            let stored = store.rollout::<RolloutState>(&name)?;
            if stored.is_none() && rule.is_none() {
                return Err(WebError::UnknownRollout(name));
            }
            let current = stored.as_ref().map_or(1, |s| s.state.run.number);
            let shown = asked.unwrap_or(current);
            let last = store.audit_page(&name, None, 1)?.items.into_iter().next();
            let analyses: Page<Analysis> =
                store.analyses_page_of(&name, Some(shown), None, RECENT_ANALYSES)?;
            let history = store.audit_page_of(&name, Some(shown), cursor, HISTORY_PAGE)?;
            let recent = store
                .audit_page_of(&name, Some(shown), None, RECENT_AUDIT)?
                .items;
            let state = stored.map(|s| s.state).unwrap_or_default();
            let mut runs = store.runs(&name)?;
            for run in runs.iter_mut().filter(|r| finished_by_emergency(r, &state)) {
                let page = store.audit_page_of(&name, Some(run.run), None, RECENT_AUDIT)?;
                if let Some(outcome) = page.items.iter().find(|e| !is_emergency(&e.action)) {
                    run.last_action = Some(outcome.action.clone());
                    run.last_at = Some(outcome.at);
                }
            }
            let view = RolloutView {
                rolled_back_stage: rolled_back_stage(&state, rule.as_deref(), &recent),
                state,
                name,
                rule,
                last,
            };
            Ok((view, analyses.items, history, recent, runs, shown))
        })
        .await?;
    let page = detail::render(&detail::Detail {
        rollout: &view,
        analyses: &analyses,
        history: &history,
        runs: &runs,
        run: shown,
        paged: cursor.is_some(),
        stop: &stop_view(&control),
        rule_file_problems: &rule_file_problems,
        audit: &recent,
        public_url: control.public_url().as_deref(),
        now: control.now(),
    });
    Ok(html_response(StatusCode::OK, page))
}
