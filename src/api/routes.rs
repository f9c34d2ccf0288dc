//! The routes: who may read what is decided here, per request, and written
//! to the access log with the answer given.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::stream::Stream;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{caller, record, ApiError, ApiState, Caller};
use crate::domain::{fmt_millis, OperationTotals, Totals};
use crate::store::{day_text, SqliteStore, TotalsReader};
use crate::{asof, report};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const FORMAT_JS: &str = include_str!("../../web/format.js");
const CHARTS_JS: &str = include_str!("../../web/charts.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML) }))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS) }))
        .route("/format.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], FORMAT_JS) }))
        .route("/charts.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CHARTS_JS) }))
        .route("/style.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE_CSS) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/operations", get(operations))
        .route("/api/v1/operations/{id}/diff", get(diff_json))
        .route("/api/v1/operations/{id}/stream", get(stream))
        .route("/api/v1/operations/{id}/{view}", get(view))
        .route("/api/v1/dead-letters", get(dead_letters_json))
        .route("/api/v1/dead-letters.csv", get(dead_letters_csv))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "not found".into()) })
        .with_state(state)
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    match state.read(|s| s.version()) {
        Ok(_) => "ready\n".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("store not readable: {e}\n")).into_response(),
    }
}

/// The caller, allowed to read `operation`; or the refusal, already logged.
fn allow(state: &ApiState, headers: &HeaderMap, path: &str, operation: &str) -> Result<Caller, ApiError> {
    let c = caller(state, headers)?;
    let Some(grant) = &c.grant else {
        record(state, &c, path, Some(operation), StatusCode::UNAUTHORIZED);
        return Err(ApiError::unauthorized());
    };
    let op = state.operations.get(operation);
    if !grant.may_see_operation(operation, op.and_then(|o| o.forces.as_ref())) {
        record(state, &c, path, Some(operation), StatusCode::FORBIDDEN);
        return Err(ApiError::forbidden());
    }
    if op.is_none() {
        record(state, &c, path, Some(operation), StatusCode::NOT_FOUND);
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no operation {operation:?}")));
    }
    Ok(c)
}

#[derive(Deserialize)]
struct AsOf {
    as_of: Option<String>,
}

fn parse_instant(name: &str, text: &str) -> Result<i64, ApiError> {
    crate::config::parse_instant(name, text).map_err(ApiError::bad_request)
}

/// The operation's totals now, or as of a moment; per-force rows the caller
/// may not see are removed.
async fn totals_for(
    state: &Arc<ApiState>,
    c: &Caller,
    id: &str,
    as_of: Option<i64>,
) -> Result<OperationTotals, ApiError> {
    let mut t = match as_of {
        None => state.read(|s| s.totals(id)).map_err(ApiError::internal)?.unwrap_or_default(),
        Some(at) => {
            let (state, id) = (state.clone(), id.to_string());
            tokio::task::spawn_blocking(move || {
                let store = SqliteStore::open_read(&state.settings.store.path)?;
                asof::totals_as_of(&store, &state.operations, &id, at)
            })
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?
        }
    };
    let grant = c.grant.as_ref().expect("allowed callers have a grant");
    t.forces.retain(|f, _| grant.may_see_force(f));
    t.joint_credit.retain(|f, _| grant.may_see_force(f));
    Ok(t)
}

fn totals_object(t: &Totals) -> Value {
    Value::Object(t.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>())
}

fn forces_object(t: &OperationTotals) -> Value {
    Value::Object(t.forces.iter().map(|(f, r)| (f.clone(), totals_object(r))).collect())
}

fn credit_object(t: &OperationTotals) -> Value {
    Value::Object(t.joint_credit.iter().map(|(f, r)| (f.clone(), totals_object(r))).collect())
}

fn totals_body(state: &ApiState, id: &str, as_of: Option<i64>, t: &OperationTotals) -> Value {
    let version = state.read(|s| s.version()).unwrap_or_default();
    json!({
        "operation": id,
        "as_of": as_of.map(fmt_millis),
        "version": version,
        "totals": totals_object(&t.joint),
        "forces": forces_object(t),
        "joint_credit": credit_object(t),
    })
}

fn csv(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// The views of one operation's figures, now or as of a moment: JSON and CSV
/// of the totals, the per-force view and the timeline.
async fn view(
    State(state): State<Arc<ApiState>>,
    Path((id, view)): Path<(String, String)>,
    Query(q): Query<AsOf>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    const VIEWS: &[&str] = &["totals", "totals.csv", "forces", "forces.csv", "timeline", "timeline.csv"];
    if !VIEWS.contains(&view.as_str()) {
        return Err(ApiError(StatusCode::NOT_FOUND, "not found".into()));
    }
    let path = format!("/api/v1/operations/{id}/{view}");
    let c = allow(&state, &headers, &path, &id)?;
    let at = q.as_of.as_deref().map(|t| parse_instant("as_of", t)).transpose()?;
    let t = totals_for(&state, &c, &id, at).await?;
    record(&state, &c, &path, Some(&id), StatusCode::OK);
    let days = || t.days.iter().map(|(d, r)| (day_text(*d), r));
    Ok(match view.as_str() {
        "totals" => Json(totals_body(&state, &id, at, &t)).into_response(),
        "totals.csv" => csv(report::to_csv(&t)),
        "forces" => Json(json!({
            "operation": id,
            "as_of": at.map(fmt_millis),
            "forces": forces_object(&t),
            "joint_credit": credit_object(&t),
        }))
        .into_response(),
        "forces.csv" => csv(report::rows_csv("force", t.forces.iter().map(|(f, r)| (f.clone(), r)))),
        "timeline" => {
            let days: Vec<Value> = days().map(|(day, r)| json!({ "day": day, "totals": totals_object(r) })).collect();
            Json(json!({ "operation": id, "as_of": at.map(fmt_millis), "days": days })).into_response()
        }
        _ => csv(report::rows_csv("day", days())),
    })
}

#[derive(Deserialize)]
struct Between {
    from: Option<String>,
    to: Option<String>,
}

/// "What changed since the figures were published": `to − from`.
async fn diff_json(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<Between>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let path = format!("/api/v1/operations/{id}/diff");
    let c = allow(&state, &headers, &path, &id)?;
    let from_text = q.from.ok_or_else(|| ApiError::bad_request("from is required (RFC 3339)".into()))?;
    let from = parse_instant("from", &from_text)?;
    let to = q.to.as_deref().map(|t| parse_instant("to", t)).transpose()?;
    let a = totals_for(&state, &c, &id, Some(from)).await?;
    let b = totals_for(&state, &c, &id, to).await?;
    let d = asof::diff(&a, &b);
    record(&state, &c, &path, Some(&id), StatusCode::OK);
    Ok(Json(json!({
        "operation": id,
        "from": fmt_millis(from),
        "to": to.map(fmt_millis),
        "totals": totals_object(&d.joint),
        "forces": forces_object(&d),
    })))
}

async fn operations(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let path = "/api/v1/operations";
    let c = caller(&state, &headers)?;
    let Some(grant) = &c.grant else {
        record(&state, &c, path, None, StatusCode::UNAUTHORIZED);
        return Err(ApiError::unauthorized());
    };
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
    record(&state, &c, path, None, StatusCode::OK);
    Ok(Json(json!({ "operations": list })))
}

fn dead_letters(state: &ApiState, headers: &HeaderMap, path: &str) -> Result<BTreeMap<String, i64>, ApiError> {
    let c = caller(state, headers)?;
    let status = match &c.grant {
        None => StatusCode::UNAUTHORIZED,
        Some(g) if !g.may_see_dead_letters() => StatusCode::FORBIDDEN,
        Some(_) => StatusCode::OK,
    };
    record(state, &c, path, None, status);
    match status {
        StatusCode::UNAUTHORIZED => Err(ApiError::unauthorized()),
        StatusCode::FORBIDDEN => Err(ApiError::forbidden()),
        _ => state.read(|s| s.dead_letter_counts()).map_err(ApiError::internal),
    }
}

async fn dead_letters_json(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let counts = dead_letters(&state, &headers, "/api/v1/dead-letters")?;
    Ok(Json(json!({ "dead_letters": counts })))
}

async fn dead_letters_csv(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let counts = dead_letters(&state, &headers, "/api/v1/dead-letters.csv")?;
    let mut body = String::from("reason,count\n");
    for (reason, n) in counts {
        body.push_str(&format!("{reason},{n}\n"));
    }
    Ok(csv(body))
}

/// Server-sent events: the totals at once, then whenever a batch changes
/// them. One access-log entry for the stream as a whole.
async fn stream(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let path = format!("/api/v1/operations/{id}/stream");
    let c = allow(&state, &headers, &path, &id)?;
    record(&state, &c, &path, Some(&id), StatusCode::OK);
    let grant = c.grant.expect("allowed callers have a grant");
    let events = futures::stream::unfold((state, id, grant, None::<i64>), |(state, id, grant, last)| async move {
        loop {
            let version = state.read(|s| s.version()).unwrap_or(-1);
            if Some(version) != last {
                let mut t = state.read(|s| s.totals(&id)).ok().flatten().unwrap_or_default();
                t.forces.retain(|f, _| grant.may_see_force(f));
                t.joint_credit.retain(|f, _| grant.may_see_force(f));
                let body = totals_body(&state, &id, None, &t);
                let event = Event::default().event("totals").data(body.to_string());
                return Some((Ok(event), (state, id, grant, Some(version))));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
