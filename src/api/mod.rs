//! The coordinators' HTTP API and dashboard (`jointops serve`): JSON and CSV
//! under `/api/v1/`, a live stream of totals, `/healthz`, `/readyz`, and the
//! dashboard page at `/`. Every data request needs a bearer token, and every
//! read of figures is written to the append-only access log.

mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::json;

use crate::access::{hash_token, Grant};
use crate::config::HubSettings;
use crate::domain::Operations;
use crate::store::{Access, AccessStore, SqliteStore};

pub use routes::router;

/// What every handler shares: settings, and two connections to the store
/// (reads never wait behind the access log's writes).
pub struct ApiState {
    pub settings: HubSettings,
    pub operations: Operations,
    read: Mutex<SqliteStore>,
    write: Mutex<SqliteStore>,
}

impl ApiState {
    pub fn open(settings: HubSettings) -> anyhow::Result<Arc<ApiState>> {
        // Creates the schema when the API starts before any rollup.
        let write = SqliteStore::open(&settings.store.path)?;
        let read = SqliteStore::open_read(&settings.store.path)?;
        let operations = settings.operations().map_err(anyhow::Error::msg)?;
        Ok(Arc::new(ApiState { settings, operations, read: Mutex::new(read), write: Mutex::new(write) }))
    }

    /// Runs `f` on the read connection. Queries on it are short (a totals
    /// row set); as-of figures open a connection of their own.
    fn read<T>(&self, f: impl FnOnce(&SqliteStore) -> T) -> T {
        f(&self.read.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn log(&self, entry: Access) {
        let mut store = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = store.log_access(&entry) {
            // An unrecorded read is a compliance failure: make it loud.
            tracing::error!(error = %e, path = %entry.path, "Access not recorded.");
        }
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
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "API request failed.");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
    }
}

/// One request's caller and purpose, for the decision and the access log.
pub struct Caller {
    pub grant: Option<Grant>,
    justification: Option<String>,
}

/// Finds the caller's grant from `Authorization: Bearer …` (never logged).
fn caller(state: &ApiState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let justification = headers
        .get("x-justification")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(500).collect::<String>())
        .filter(|s| !s.trim().is_empty());
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let grant = match token {
        Some(t) if !t.is_empty() => state.read(|s| s.find_token(&hash_token(t))).map_err(ApiError::internal)?,
        _ => None,
    };
    Ok(Caller { grant, justification })
}

/// Records one request in the access log: who, what, when, why, and the answer.
fn record(state: &ApiState, caller: &Caller, path: &str, operation: Option<&str>, status: StatusCode) {
    state.log(Access {
        seq: 0,
        at: chrono::Utc::now().timestamp_millis(),
        token_id: caller.grant.as_ref().map(|g| g.id.clone()),
        role: caller.grant.as_ref().map(|g| g.role.to_string()),
        method: "GET".into(),
        path: path.to_string(),
        operation: operation.map(str::to_string),
        status: status.as_u16(),
        justification: caller.justification.clone(),
    });
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

pub fn app(state: Arc<ApiState>) -> Router {
    router(state).layer(axum::middleware::from_fn(headers))
}

/// Serves until `shutdown` resolves. `listen` as in the hub config.
pub async fn serve(
    settings: HubSettings,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = ApiState::open(settings)?;
    let addr: SocketAddr = listener.local_addr()?;
    tracing::info!(%addr, "API listening.");
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
