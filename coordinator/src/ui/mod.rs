//! The coordinator's web UI and Prometheus metrics, on their own address (`--http-bind`):
//! the jobs with live progress, a job's stage graph with the bytes each arrow carried, its
//! stages and tasks, the workers, the tables and views, cancel buttons, and `/metrics`.
//!
//! Served by the same tonic server type as the gRPC services (HTTP/1.1 accepted), so TLS
//! and the cluster token apply as they do there. Pages are HTML made here; a small script
//! (`assets/ui.js`) refreshes a page's content while a job on it runs. No network access is
//! needed at build or run time: the assets are compiled in.

mod access;
mod api;
mod dag;
mod format;
mod metrics;
mod pages;
#[cfg(test)]
mod test_support;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tally_common::auth::RequireToken;
use tally_common::ids::JobId;
use tally_common::security::ClusterSecurity;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use crate::error::CoordinatorError;
use crate::sql::frontend::SqlFrontend;
use access::{SESSION_TTL, Sessions};

/// What every page reads from.
#[derive(Clone)]
pub(crate) struct UiState {
    pub frontend: Arc<SqlFrontend>,
    /// Whether workers serve TLS, for the links to their metrics.
    pub tls: bool,
    /// Whether people log in (the cluster has a token), so pages offer to log out.
    pub log_in: bool,
}

/// The address the UI listens on and the task serving it.
pub(crate) struct UiServer {
    pub endpoint: String,
    pub task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Binds `bind` and serves the UI until `shutdown` turns true. Beyond loopback only with
/// the cluster token, as for the gRPC services.
pub(crate) async fn serve(
    bind: SocketAddr,
    frontend: Arc<SqlFrontend>,
    security: &ClusterSecurity,
    mut shutdown: watch::Receiver<bool>,
) -> Result<UiServer, CoordinatorError> {
    security.check_listen(bind)?;
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| CoordinatorError::Bind {
            addr: bind.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| CoordinatorError::Internal(e.to_string()))?;
    let state = UiState {
        frontend,
        tls: security.tls.is_some(),
        log_in: security.token.is_some(),
    };
    let app = router(
        state,
        RequireToken::new(security.token.as_ref()),
        security.tls.is_some(),
    );
    let task = tokio::spawn(
        security
            .server()?
            .accept_http1(true)
            .add_routes(Routes::from(app))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = shutdown.wait_for(|stopped| *stopped).await;
                },
            ),
    );
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let endpoint = format!("{scheme}://{local}");
    tracing::info!(%endpoint, "web UI listening");
    Ok(UiServer { endpoint, task })
}

/// Every page and endpoint, behind the token check.
pub(crate) fn router(state: UiState, token: RequireToken, secure_cookie: bool) -> Router {
    let guarded = Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/cancel", post(cancel_job))
        .route("/workers", get(workers_page))
        .route("/tables", get(tables_page))
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{id}", get(api::job))
        .route("/api/workers", get(api::workers))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    access::guard(guarded, token, Sessions::new(SESSION_TTL), secure_cookie)
        .route("/assets/ui.css", get(stylesheet))
        .route("/assets/ui.js", get(script))
}

/// `?fragment=1` asks for the page's live part only, which the script swaps in.
fn wants_fragment(query: &Option<String>) -> bool {
    query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|pair| pair == "fragment=1"))
}

fn page(state: &UiState, title: &str, content: pages::Content, query: &Option<String>) -> Response {
    let live = if content.live { "1" } else { "0" };
    let mut response = if wants_fragment(query) {
        Html(content.html).into_response()
    } else {
        Html(pages::layout(title, &content, state.log_in)).into_response()
    };
    // The script keeps refreshing while this says something on the page runs.
    response
        .headers_mut()
        .insert("x-tally-live", header::HeaderValue::from_static(live));
    response
}

async fn jobs_page(State(state): State<UiState>, RawQuery(query): RawQuery) -> Response {
    let jobs = state.frontend.jobs.statuses();
    page(&state, "Jobs", pages::jobs(jobs), &query)
}

async fn job_page(
    State(state): State<UiState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    match state.frontend.jobs.status(&JobId::from(id.clone())) {
        Some(job) => page(&state, &format!("Job {id}"), pages::job(&job), &query),
        None => not_found(&format!("no job {id}")),
    }
}

/// The cancel button's form. A request from another site is refused, so a page elsewhere
/// cannot cancel jobs through a browser that has the token cookie or loopback access.
async fn cancel_job(
    State(state): State<UiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site.as_bytes() == b"cross-site")
    {
        return (
            StatusCode::FORBIDDEN,
            "cross-site requests cannot cancel jobs",
        )
            .into_response();
    }
    let job_id = JobId::from(id.clone());
    match state.frontend.jobs.cancel(&job_id) {
        Some(job_state) => {
            tracing::info!(job_id = %job_id, state = job_state.as_str(), "cancel requested from the web UI");
            Redirect::to(&format!("/jobs/{id}")).into_response()
        }
        None => not_found(&format!("no job {id}")),
    }
}

async fn workers_page(State(state): State<UiState>, RawQuery(query): RawQuery) -> Response {
    let workers = state.frontend.workers.list();
    let jobs = state.frontend.jobs.statuses();
    page(
        &state,
        "Workers",
        pages::workers(&workers, &jobs, state.tls),
        &query,
    )
}

async fn tables_page(State(state): State<UiState>, RawQuery(query): RawQuery) -> Response {
    match state.frontend.catalog.list().await {
        Ok(tables) => page(&state, "Tables", pages::tables(&tables), &query),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn metrics_text(State(state): State<UiState>) -> Response {
    let text = metrics::render(
        &state.frontend.jobs.statuses(),
        &state.frontend.workers.list(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn not_found(message: &str) -> Response {
    (StatusCode::NOT_FOUND, message.to_string()).into_response()
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/ui.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/ui.js"),
    )
}
