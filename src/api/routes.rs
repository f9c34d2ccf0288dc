//! The routes: who may read what is decided here, per request; the
//! access-log middleware (`log.rs`) records the answer given.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use futures::stream::Stream;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::exports::{self, Stamp, Units};
use super::params::{moment, now, Known, NoParams, Strict};
use super::{dead_letters, publish, status, ApiError, ApiState, Caller};
use crate::access::Role;
use crate::asof;
use crate::domain::{fmt_millis, OperationTotals, Totals};
use crate::store::{day_text, AccessStore, SqliteStore, TotalsReader};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const FORMAT_JS: &str = include_str!("../../web/format.js");
const CHARTS_JS: &str = include_str!("../../web/charts.js");
const LIVE_JS: &str = include_str!("../../web/live.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");
const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML) }))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }))
        .route("/format.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], FORMAT_JS) }))
        .route("/charts.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CHARTS_JS) }))
        .route("/live.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], LIVE_JS) }))
        .route("/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(crate::telemetry::metrics::metrics_answer))
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }))
        .route("/api/v1/whoami", get(status::whoami))
        .route("/api/v1/status", get(status::hub))
        .route("/api/v1/operations", get(operations))
        .route("/api/v1/operations/{id}/status", get(status::operation))
        .route("/api/v1/operations/{id}/diff", get(diff_json))
        .route("/api/v1/operations/{id}/diff.csv", get(diff_csv))
        .route("/api/v1/operations/{id}/stream", get(stream))
        .route("/api/v1/operations/{id}/publications", get(publish::list).post(publish::publish))
        .route("/api/v1/operations/{id}/publications/{n}/changes", get(publish::changes))
        .route("/api/v1/operations/{id}/{view}", get(view))
        .route("/api/v1/dead-letters", get(dead_letters::list))
        .route("/api/v1/dead-letters.csv", get(dead_letters::csv))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "not found".into()) })
        .with_state(state)
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    match state.read(|s| s.version()) {
        Ok(_) => "ready\n".into_response(),
        Err(e) => {
            // The error names files: it goes to the log, not to the caller.
            tracing::warn!(error = %e, "Not ready.");
            (StatusCode::SERVICE_UNAVAILABLE, "store not readable\n").into_response()
        }
    }
}

/// Whether the caller may read `operation`. Only a coordinator of every
/// operation learns that one does not exist: a liaison gets the same 403
/// for an unknown operation as for one their force is not in.
pub(super) fn allow(state: &ApiState, c: &Caller, operation: &str) -> Result<(), ApiError> {
    c.concerns(operation);
    let op = state.operations.get(operation);
    let may = match op {
        Some(o) => c.grant.may_see_operation(operation, o.forces.as_ref()),
        None => c.grant.role == Role::Coordinator && c.grant.may_see_operation(operation, None),
    };
    if !may {
        return Err(ApiError::forbidden());
    }
    if op.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no operation {operation:?}")));
    }
    Ok(())
}

#[derive(Deserialize)]
struct ViewParams {
    as_of: Option<String>,
    units: Option<String>,
}

impl Known for ViewParams {
    const NAMES: &'static [&'static str] = &["as_of", "units"];
}

/// The operation's totals now, or as of a moment; per-force rows the caller
/// may not see are removed.
pub(super) async fn totals_for(
    state: &Arc<ApiState>,
    c: &Caller,
    id: &str,
    as_of: Option<i64>,
) -> Result<OperationTotals, ApiError> {
    let mut t = match as_of {
        None => state.read(|s| s.totals(id)).map_err(ApiError::internal)?.unwrap_or_default(),
        Some(at) => {
            // A recomputation holds the whole history in memory (about 1 GiB
            // for a million reports): a burst of them must not exhaust it.
            let permit = state.asof_slots.clone().try_acquire_owned().map_err(|_| {
                ApiError(StatusCode::TOO_MANY_REQUESTS, "too many as-of figures being computed; try again".into())
            })?;
            let (state, id) = (state.clone(), id.to_string());
            tokio::task::spawn_blocking(move || {
                // Held until the work ends, even if the client has gone.
                let _permit = permit;
                let store = SqliteStore::open_read(&state.settings.store.path)?;
                asof::totals_as_of(&store, &state.operations, &id, at)
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?
        }
    };
    let grant = &c.grant;
    hide_forces(&mut t, grant);
    Ok(t)
}

/// Removes the per-force rows a caller may not see.
fn hide_forces(t: &mut OperationTotals, grant: &crate::access::Grant) {
    t.forces.retain(|f, _| grant.may_see_force(f));
    t.joint_credit.retain(|f, _| grant.may_see_force(f));
    t.provisional_forces.retain(|f, _| grant.may_see_force(f));
}

pub(super) fn totals_object(t: &Totals) -> Value {
    Value::Object(t.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>())
}

fn forces_object(t: &OperationTotals) -> Value {
    Value::Object(t.forces.iter().map(|(f, r)| (f.clone(), totals_object(r))).collect())
}

fn credit_object(t: &OperationTotals) -> Value {
    Value::Object(t.joint_credit.iter().map(|(f, r)| (f.clone(), totals_object(r))).collect())
}

/// The figures: joint totals, the per-force view, the joint outcomes' part
/// of it, and the part still provisional (how many, of what, whose).
pub(super) fn figures_json(t: &OperationTotals) -> Map<String, Value> {
    let provisional: Map<String, Value> =
        t.provisional_forces.iter().map(|(f, r)| (f.clone(), totals_object(r))).collect();
    let mut m = Map::new();
    m.insert("totals".into(), totals_object(&t.joint));
    m.insert("forces".into(), forces_object(t));
    m.insert("joint_credit".into(), credit_object(t));
    m.insert("provisional".into(), json!({ "joint": totals_object(&t.provisional), "forces": provisional }));
    m
}

fn totals_body(id: &str, version: i64, as_of: Option<i64>, t: &OperationTotals) -> Value {
    let mut m = Map::new();
    m.insert("operation".into(), json!(id));
    m.insert("as_of".into(), json!(as_of.map(fmt_millis)));
    m.insert("generated_at".into(), json!(fmt_millis(now())));
    m.insert("version".into(), json!(version));
    m.extend(figures_json(t));
    Value::Object(m)
}

/// The views of one operation's figures, now or as of a moment: JSON and CSV
/// of the totals, the per-force view and the timeline.
async fn view(
    State(state): State<Arc<ApiState>>,
    Path((id, view)): Path<(String, String)>,
    Extension(c): Extension<Caller>,
    Strict(q): Strict<ViewParams>,
) -> Result<Response, ApiError> {
    const VIEWS: &[&str] = &["totals", "totals.csv", "forces", "forces.csv", "timeline", "timeline.csv"];
    if !VIEWS.contains(&view.as_str()) {
        return Err(ApiError(StatusCode::NOT_FOUND, "not found".into()));
    }
    allow(&state, &c, &id)?;
    let generated = now();
    let at = q.as_of.as_deref().map(|t| moment("as_of", t, generated)).transpose()?;
    c.figures_at(&[("as_of", at)]);
    let units = Units::parse(q.units.as_deref()).map_err(ApiError::bad_request)?;
    let version = state.read(|s| s.version()).map_err(ApiError::internal)?;
    let t = totals_for(&state, &c, &id, at).await?;
    let days = || t.days.iter().map(|(d, r)| (day_text(*d), r));
    let stamp = Stamp::figures(&id, at.unwrap_or(generated), generated);
    let name = |what: &str| format!("{id}-{what}-as-of-{}", exports::compact(at.unwrap_or(generated)));
    let stamped = |mut v: Value| {
        v["generated_at"] = json!(fmt_millis(generated));
        Json(v).into_response()
    };
    Ok(match view.as_str() {
        "totals" => Json(totals_body(&id, version, at, &t)).into_response(),
        "totals.csv" => {
            let forces: Vec<(&str, &Totals)> = t.forces.iter().map(|(f, r)| (f.as_str(), r)).collect();
            exports::download(exports::by_total(&stamp, units, &t.joint, &forces), &name("totals"))
        }
        "forces" => stamped(json!({
            "operation": id,
            "as_of": at.map(fmt_millis),
            "forces": forces_object(&t),
            "joint_credit": credit_object(&t),
        })),
        "forces.csv" => {
            let rows = t.forces.iter().map(|(f, r)| (f.clone(), r));
            exports::download(exports::rows(&stamp, "force", units, rows), &name("forces"))
        }
        "timeline" => {
            let days: Vec<Value> = days().map(|(day, r)| json!({ "day": day, "totals": totals_object(r) })).collect();
            stamped(json!({ "operation": id, "as_of": at.map(fmt_millis), "days": days }))
        }
        _ => exports::download(exports::rows(&stamp, "day", units, days()), &name("timeline")),
    })
}

#[derive(Deserialize)]
struct Between {
    from: Option<String>,
    to: Option<String>,
    units: Option<String>,
}

impl Known for Between {
    const NAMES: &'static [&'static str] = &["from", "to", "units"];
}

/// `to − from` of one operation, with the moments it is between.
async fn diff_of(
    state: &Arc<ApiState>,
    c: &Caller,
    id: &str,
    q: &Between,
) -> Result<(i64, Option<i64>, OperationTotals), ApiError> {
    allow(state, c, id)?;
    let now = now();
    let from_text = q.from.as_deref().ok_or_else(|| ApiError::bad_request("from is required (RFC 3339)".into()))?;
    let from = moment("from", from_text, now)?;
    let to = q.to.as_deref().map(|t| moment("to", t, now)).transpose()?;
    c.figures_at(&[("from", Some(from)), ("to", to)]);
    let a = totals_for(state, c, id, Some(from)).await?;
    let b = totals_for(state, c, id, to).await?;
    Ok((from, to, asof::diff(&a, &b)))
}

/// "What changed since the figures were published": `to − from`.
async fn diff_json(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Extension(c): Extension<Caller>,
    Strict(q): Strict<Between>,
) -> Result<Json<Value>, ApiError> {
    let (from, to, d) = diff_of(&state, &c, &id, &q).await?;
    Ok(Json(json!({
        "operation": id,
        "from": fmt_millis(from),
        "to": to.map(fmt_millis),
        "generated_at": fmt_millis(now()),
        "totals": totals_object(&d.joint),
        "forces": forces_object(&d),
    })))
}

/// The same as CSV: a `joint` row, then one per force that changed.
async fn diff_csv(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Extension(c): Extension<Caller>,
    Strict(q): Strict<Between>,
) -> Result<Response, ApiError> {
    let units = Units::parse(q.units.as_deref()).map_err(ApiError::bad_request)?;
    let (from, to, d) = diff_of(&state, &c, &id, &q).await?;
    let generated = now();
    let stamp = Stamp(vec![
        ("operation", id.clone()),
        ("from", fmt_millis(from)),
        ("to", fmt_millis(to.unwrap_or(generated))),
        ("generated_at", fmt_millis(generated)),
    ]);
    let rows = std::iter::once(("joint".to_string(), &d.joint)).chain(d.forces.iter().map(|(f, r)| (f.clone(), r)));
    let name = format!("{id}-changes-{}-to-{}", exports::compact(from), exports::compact(to.unwrap_or(generated)));
    Ok(exports::download(exports::rows(&stamp, "scope", units, rows), &name))
}

async fn operations(
    State(state): State<Arc<ApiState>>,
    Extension(c): Extension<Caller>,
    Strict(NoParams {}): Strict<NoParams>,
) -> Json<Value> {
    let grant = &c.grant;
    let mut ops: Vec<_> =
        state.operations.iter().filter(|o| grant.may_see_operation(&o.id, o.forces.as_ref())).collect();
    ops.sort_by(|a, b| a.id.cmp(&b.id));
    let list: Vec<Value> = ops
        .iter()
        .map(|o| {
            let s = state.settings.operations.iter().find(|s| s.id == o.id);
            json!({
                "id": o.id,
                "name": o.name,
                "starts": s.map(|s| s.starts.clone()),
                "ends": s.map(|s| s.ends.clone()),
                "forces": o.forces.as_ref().map(|f| f.iter().cloned().collect::<Vec<_>>()),
            })
        })
        .collect();
    Json(json!({ "operations": list }))
}

/// How often a live stream checks that its token is still valid.
const STREAM_RECHECK: Duration = Duration::from_secs(1);
const STREAM_POLL: Duration = Duration::from_millis(200);
/// How often a live stream sends the operation's status (`event: status`).
const STREAM_STATUS: Duration = Duration::from_secs(2);

/// One live stream's state between events.
struct Live {
    state: Arc<ApiState>,
    id: String,
    caller: Caller,
    last: Option<i64>,
    checked: Instant,
    /// When the status was last sent; `None`: not yet.
    status_sent: Option<Instant>,
    _slot: super::streams::StreamSlot,
}

impl Live {
    /// The next totals event; `None` ends the stream: the token was revoked,
    /// the store cannot be read (a client reconnects rather than being shown
    /// zeros), or the server is stopping.
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Live)> {
        let mut stopping = self.state.stopping.clone();
        loop {
            if *stopping.borrow() {
                return None;
            }
            if self.checked.elapsed() >= STREAM_RECHECK {
                let active = self.state.tokens(|r| r.token_active(&self.caller.grant.id));
                if !active.unwrap_or(false) {
                    return None;
                }
                self.checked = Instant::now();
            }
            let version = self.state.read(|s| s.version()).ok()?;
            if Some(version) != self.last {
                let mut t = self.state.read(|s| s.totals(&self.id)).ok()?.unwrap_or_default();
                hide_forces(&mut t, &self.caller.grant);
                let body = totals_body(&self.id, version, None, &t);
                self.last = Some(version);
                return Some((Ok(Event::default().event("totals").data(body.to_string())), self));
            }
            if self.status_sent.is_none_or(|at| at.elapsed() >= STREAM_STATUS) {
                let doc = status::operation_status(&self.state, &self.caller, &self.id).ok()?;
                self.status_sent = Some(Instant::now());
                return Some((Ok(Event::default().event("status").data(doc.to_string())), self));
            }
            tokio::select! {
                _ = tokio::time::sleep(STREAM_POLL) => {}
                _ = stopping.changed() => return None,
            }
        }
    }
}

/// Server-sent events: the totals at once, then whenever a batch changes
/// them, and the operation's status every 2 s (`event: status`), until the
/// token is revoked or the client leaves. One access-log
/// entry for the stream as a whole; streams are capped (429).
async fn stream(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Extension(c): Extension<Caller>,
    Strict(NoParams {}): Strict<NoParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    allow(&state, &c, &id)?;
    let slot = state
        .streams
        .take(&c.grant.id)
        .ok_or_else(|| ApiError(StatusCode::TOO_MANY_REQUESTS, "too many live streams".into()))?;
    let live = Live { state, id, caller: c, last: None, checked: Instant::now(), status_sent: None, _slot: slot };
    let events = futures::stream::unfold(live, Live::next);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
