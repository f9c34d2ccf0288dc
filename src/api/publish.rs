//! Publishing a set of figures records it — who, when, for what moment,
//! the figures themselves and a note — so that "what did we publish on
//! Monday, and what has changed since" is one request. The records live in
//! the records file: a rebuild never loses them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::params::{moment, now, NoParams, Strict};
use super::routes::{allow, figures_json, totals_for, totals_object};
use super::{ApiError, ApiState, Caller};
use crate::access::{Grant, Role};
use crate::domain::{fmt_millis, Totals};
use crate::store::Publication;

/// Longest note kept with a publication, in characters.
const NOTE_CHARS: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    as_of: Option<String>,
    note: String,
}

pub async fn publish(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Extension(c): Extension<Caller>,
    Strict(NoParams {}): Strict<NoParams>,
    body: Bytes,
) -> Result<Response, ApiError> {
    allow(&state, &c, &id)?;
    if c.grant.role != Role::Coordinator {
        return Err(ApiError::forbidden());
    }
    let req: Request = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be JSON {{\"note\": \"…\", \"as_of\": \"RFC 3339\" (optional)}}: {e}"
        ))
    })?;
    let note = req.note.trim().to_string();
    if note.is_empty() || note.chars().count() > NOTE_CHARS {
        return Err(ApiError::bad_request(format!(
            "note: 1 to {NOTE_CHARS} characters, saying what the figures were for"
        )));
    }
    let published_at = now();
    let as_of = req.as_of.as_deref().map(|t| moment("as_of", t, published_at)).transpose()?;
    c.figures_at(&[("as_of", as_of)]);
    let t = totals_for(&state, &c, &id, as_of).await?;
    let p = Publication {
        id: 0,
        operation: id,
        published_at,
        published_by: format!("{} ({})", c.grant.label, c.grant.id),
        as_of: as_of.unwrap_or(published_at),
        note,
        figures: Value::Object(figures_json(&t)).to_string(),
    };
    let n = state.records(|r| r.publish(&p)).map_err(ApiError::internal)?;
    let record = record_json(&Publication { id: n, ..p }, &c.grant);
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

/// Per-force rows of a figures object the caller may not see, removed.
fn visible(mut figures: Value, grant: &Grant) -> Value {
    let keep = |m: &mut Value| {
        if let Some(rows) = m.as_object_mut() {
            rows.retain(|f, _| grant.may_see_force(f));
        }
    };
    for key in ["forces", "joint_credit"] {
        if let Some(rows) = figures.get_mut(key) {
            keep(rows);
        }
    }
    if let Some(rows) = figures.pointer_mut("/provisional/forces") {
        keep(rows);
    }
    figures
}

fn record_json(p: &Publication, grant: &Grant) -> Value {
    let figures: Value = serde_json::from_str(&p.figures).unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert("id".into(), json!(p.id));
    out.insert("operation".into(), json!(p.operation));
    out.insert("published_at".into(), json!(fmt_millis(p.published_at)));
    out.insert("published_by".into(), json!(p.published_by));
    out.insert("as_of".into(), json!(fmt_millis(p.as_of)));
    out.insert("note".into(), json!(p.note));
    if let Value::Object(f) = visible(figures, grant) {
        out.extend(f);
    }
    Value::Object(out)
}

pub async fn list(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Extension(c): Extension<Caller>,
    Strict(NoParams {}): Strict<NoParams>,
) -> Result<Json<Value>, ApiError> {
    allow(&state, &c, &id)?;
    let all = state.records(|r| r.publications(&id)).map_err(ApiError::internal)?;
    let list: Vec<Value> = all.iter().map(|p| record_json(p, &c.grant)).collect();
    Ok(Json(json!({ "operation": id, "publications": list })))
}

/// A totals object as stored back into `Totals` (names it does not know,
/// from a later version, are left out).
fn totals_of(v: &Value) -> Totals {
    let mut t = Totals::default();
    for (name, n) in v.as_object().into_iter().flatten() {
        if let (Some(slot), Some(n)) = (t.get_mut(name), n.as_i64()) {
            *slot = n;
        }
    }
    t
}

fn minus(now: &Totals, then: &Totals) -> Value {
    let mut d = *now;
    d.add_scaled(then, -1);
    totals_object(&d)
}

pub async fn changes(
    State(state): State<Arc<ApiState>>,
    Path((id, n)): Path<(String, i64)>,
    Extension(c): Extension<Caller>,
    Strict(NoParams {}): Strict<NoParams>,
) -> Result<Json<Value>, ApiError> {
    allow(&state, &c, &id)?;
    let p = state
        .records(|r| r.publication(&id, n))
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no publication {n} of {id}")))?;
    let published = record_json(&p, &c.grant);
    let t = totals_for(&state, &c, &id, None).await?;
    let then_forces = published["forces"].as_object().cloned().unwrap_or_default();
    let mut forces = Map::new();
    let names: std::collections::BTreeSet<&String> = then_forces.keys().chain(t.forces.keys()).collect();
    for f in names {
        let now_row = t.forces.get(f).copied().unwrap_or_default();
        let then_row = then_forces.get(f).map(totals_of).unwrap_or_default();
        forces.insert(f.clone(), minus(&now_row, &then_row));
    }
    let mut now_doc = figures_json(&t);
    now_doc.insert("generated_at".into(), json!(fmt_millis(now())));
    Ok(Json(json!({
        "publication": published,
        "now": now_doc,
        "changes": { "totals": minus(&t.joint, &totals_of(&published["totals"])), "forces": forces },
    })))
}
