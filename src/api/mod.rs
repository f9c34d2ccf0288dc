//! The coordinators' HTTP API and dashboard (`jointops serve`): JSON and CSV
//! under `/api/v1/`, a live stream of totals, `/healthz`, `/readyz`, and the
//! dashboard page at `/`. Every request under `/api/v1/` needs a bearer
//! token and is written to the append-only access log, whatever its answer;
//! when the log cannot be written, no figures are served.

mod dead_letters;
mod exports;
mod log;
mod params;
mod publish;
mod routes;
mod server;
mod status;
mod streams;
mod tls;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;
use tokio::sync::watch;

use crate::access::Grant;
use crate::config::HubSettings;
use crate::domain::Operations;
use crate::store::{open_records, FileId, RecordsStore, SqliteStore, StoreError};

pub use log::{REFUSED_FIELD_BYTES, REFUSED_PER_WINDOW};
pub use routes::router;
pub use server::serve;
pub use tls::TlsError;

/// The derived store as last opened, and which file that was.
struct Derived {
    store: SqliteStore,
    file: Option<FileId>,
}

/// What every handler shares: settings, a read connection to the store,
/// the records (tokens, access log), and the live streams' slots.
pub struct ApiState {
    pub settings: HubSettings,
    pub operations: Operations,
    derived: Mutex<Derived>,
    /// Token checks have a connection of their own, so that they never wait
    /// behind an access-log write's fsync.
    tokens: Mutex<RecordsStore>,
    records: Mutex<RecordsStore>,
    refused: Mutex<log::FloodGate>,
    streams: streams::StreamSlots,
    /// As-of recomputations running at once (429 beyond).
    asof_slots: Arc<tokio::sync::Semaphore>,
    stopping: watch::Receiver<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ApiState {
    pub fn open(settings: HubSettings, stopping: watch::Receiver<bool>) -> anyhow::Result<Arc<ApiState>> {
        let path = &settings.store.path;
        // Creates the schema when the API starts before any rollup.
        drop(SqliteStore::open(path)?);
        let derived = Derived { store: SqliteStore::open_read(path)?, file: FileId::of(path).ok() };
        let records = open_records(&settings.store)?;
        let tokens = open_records(&settings.store)?;
        let operations = settings.operations().map_err(anyhow::Error::msg)?;
        let streams = streams::StreamSlots::new(settings.api.max_streams, settings.api.max_streams_per_token);
        Ok(Arc::new(ApiState {
            asof_slots: Arc::new(tokio::sync::Semaphore::new(settings.api.max_asof)),
            settings,
            operations,
            derived: Mutex::new(derived),
            tokens: Mutex::new(tokens),
            records: Mutex::new(records),
            refused: Mutex::new(log::FloodGate::new()),
            streams,
            stopping,
        }))
    }

    /// Runs `f` on the read connection. A rebuild renames a new store file
    /// into place; the connection would go on reading the old, deleted one,
    /// so the file behind the path is checked (one `stat`) on every read.
    fn read<T>(&self, f: impl FnOnce(&SqliteStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let path = &self.settings.store.path;
        let mut d = lock(&self.derived);
        let now = FileId::of(path).map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        if d.file != Some(now) {
            d.store = SqliteStore::open_read(path)?;
            d.file = Some(now);
            tracing::info!(store = %path.display(), "Store file replaced (a rebuild); reading the new one.");
        }
        f(&d.store)
    }

    /// Runs `f` on the connection that writes the access log.
    fn records<T>(&self, f: impl FnOnce(&mut RecordsStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        f(&mut lock(&self.records))
    }

    /// Runs `f` on the connection that checks tokens (single-row reads).
    fn tokens<T>(&self, f: impl FnOnce(&RecordsStore) -> Result<T, StoreError>) -> Result<T, StoreError> {
        f(&lock(&self.tokens))
    }
}

/// An API error: the status, and a message that tells a caller without
/// access nothing more than the status does.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl ApiError {
    fn unauthorized() -> Self {
        ApiError(StatusCode::UNAUTHORIZED, "unauthorized".into())
    }
    fn forbidden() -> Self {
        ApiError(StatusCode::FORBIDDEN, "forbidden".into())
    }
    fn bad_request(message: String) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message)
    }
    /// Fail closed: without a working access log (or token store) nothing is served.
    fn unavailable() -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "unavailable".into())
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "API request failed.");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
    }
}

/// The caller of a request under `/api/v1/`, found by the access-log
/// middleware; handlers name the operation they were asked about in it.
#[derive(Clone)]
pub struct Caller {
    pub grant: Grant,
    operation: Arc<Mutex<Option<String>>>,
    figures_at: Arc<Mutex<Option<String>>>,
}

impl Caller {
    /// The operation this request concerns, for its access-log entry.
    fn concerns(&self, operation: &str) {
        *lock(&self.operation) = Some(operation.to_string());
    }

    /// The moments the figures served are for, for its access-log entry.
    fn figures_at(&self, moments: &[(&str, Option<i64>)]) {
        let said: Vec<String> = moments
            .iter()
            .filter_map(|(name, at)| at.map(|at| format!("{name}={}", crate::domain::fmt_millis(at))))
            .collect();
        if !said.is_empty() {
            *lock(&self.figures_at) = Some(said.join(" "));
        }
    }
}

/// Security headers on every response; no caching of figures anywhere.
async fn headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Requests by route template (never the raw path: an operation code or a
/// probe's path must not become a label) and status, and their time.
async fn measured(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    let labels = [("route", route.clone()), ("method", method), ("status", status)];
    metrics::counter!("jointops_api_requests_total", &labels).increment(1);
    metrics::histogram!("jointops_api_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

/// Request bodies: the API takes none, so anything beyond a few KiB is refused (413).
const MAX_BODY_BYTES: usize = 4096;

pub fn app(state: Arc<ApiState>) -> Router {
    crate::telemetry::metrics::handle();
    metrics::gauge!("jointops_api_open_streams").set(0.0);
    // Innermost first: the body limit's 413 is logged like any answer.
    router(state.clone())
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(state, log::logged))
        .route_layer(axum::middleware::from_fn(measured))
        .layer(axum::middleware::from_fn(headers))
}
