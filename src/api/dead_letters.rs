//! Refused records back to the force that sent them: each outstanding dead
//! letter with force, event id, reason, detail and what to do about it —
//! never the payload. Coordinators see everything they may; a liaison sees
//! their own force's, which is how a force learns that an outcome it
//! believes counted is not.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::params::{Known, Strict};
use super::routes::allow;
use super::{exports, ApiError, ApiState, Caller};
use crate::access::Role;
use crate::audit::csv_of;
use crate::domain::{advice_for, fmt_millis};
use crate::store::{DeadLetter, DeadLetterQuery, TotalsReader};

/// Listed in JSON at most; the counts are always complete.
const JSON_ROWS: usize = 1_000;
/// Listed in a CSV at most.
const CSV_ROWS: usize = 100_000;

#[derive(Deserialize)]
pub struct Filter {
    operation: Option<String>,
    force: Option<String>,
    reason: Option<String>,
}

impl Known for Filter {
    const NAMES: &'static [&'static str] = &["operation", "force", "reason"];
}

/// Whether a dead letter found for `operation` is the operation's: its own,
/// or one naming an unknown operation from a force that takes part in it.
pub fn belongs(operation: &str, forces: Option<&BTreeSet<String>>, named: Option<&str>, force: Option<&str>) -> bool {
    named == Some(operation) || forces.is_none_or(|f| force.is_some_and(|x| f.contains(x)))
}

/// The filter as the caller may apply it: a liaison is held to their own
/// force; a token limited to some operations must name one of them.
fn checked<'a>(state: &ApiState, c: &'a Caller, f: &'a Filter) -> Result<DeadLetterQuery<'a>, ApiError> {
    let force = match (&c.grant.role, f.force.as_deref()) {
        (Role::Force(own), None) => Some(own.as_str()),
        (Role::Force(own), Some(asked)) if asked != own => return Err(ApiError::forbidden()),
        (_, asked) => asked,
    };
    match f.operation.as_deref() {
        Some(op) => allow(state, c, op)?,
        None if c.grant.operations.is_some() => {
            return Err(ApiError::bad_request("operation is required: this token is limited to some operations".into()))
        }
        None => {}
    }
    if let Some(r) = f.reason.as_deref().filter(|r| crate::domain::Reason::parse(r).is_none()) {
        return Err(ApiError::bad_request(format!("no reason {r:?}")));
    }
    Ok(DeadLetterQuery { operation: f.operation.as_deref(), force, reason: f.reason.as_deref() })
}

/// Up to `max` dead letters matching `q`, and whether there were more.
fn listed(state: &ApiState, q: &DeadLetterQuery<'_>, max: usize) -> Result<(Vec<DeadLetter>, bool), ApiError> {
    let forces = q.operation.and_then(|op| state.operations.get(op)).and_then(|o| o.forces.clone());
    let mut out = Vec::new();
    let mut more = false;
    state
        .read(|s| {
            s.each_outstanding(q, &mut |d| {
                let mine = q
                    .operation
                    .is_none_or(|op| belongs(op, forces.as_ref(), d.operation.as_deref(), d.force.as_deref()));
                if mine && out.len() == max {
                    more = true;
                    return false;
                }
                if mine {
                    out.push(d);
                }
                true
            })
        })
        .map_err(ApiError::internal)?;
    Ok((out, more))
}

fn record(d: &DeadLetter) -> Value {
    json!({
        "topic": d.topic, "partition": d.partition, "offset": d.offset,
        "at": d.at.map(fmt_millis),
        "reason": d.reason, "detail": d.detail,
        "force": d.force, "event_id": d.event_id, "operation": d.operation,
        "advice": advice_for(&d.reason),
    })
}

pub async fn list(
    State(state): State<Arc<ApiState>>,
    Extension(c): Extension<Caller>,
    Strict(f): Strict<Filter>,
) -> Result<Json<Value>, ApiError> {
    let q = checked(&state, &c, &f)?;
    if let Some(op) = q.operation {
        c.concerns(op);
    }
    let (rows, truncated) = listed(&state, &q, JSON_ROWS)?;
    let forces = q.operation.and_then(|op| state.operations.get(op)).and_then(|o| o.forces.clone());
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    let tally = state.read(|s| s.dead_letter_tally(&q)).map_err(ApiError::internal)?;
    for t in tally {
        if q.operation.is_none_or(|op| belongs(op, forces.as_ref(), t.operation.as_deref(), t.force.as_deref())) {
            *counts.entry(t.reason).or_insert(0) += t.count;
        }
    }
    Ok(Json(json!({
        "operation": q.operation, "force": q.force, "reason": q.reason,
        "counts": counts,
        "truncated": truncated,
        "dead_letters": rows.iter().map(record).collect::<Vec<_>>(),
    })))
}

pub async fn csv(
    State(state): State<Arc<ApiState>>,
    Extension(c): Extension<Caller>,
    Strict(f): Strict<Filter>,
) -> Result<Response, ApiError> {
    let q = checked(&state, &c, &f)?;
    if let Some(op) = q.operation {
        c.concerns(op);
    }
    let (rows, truncated) = listed(&state, &q, CSV_ROWS)?;
    if truncated {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("more than {CSV_ROWS} dead letters: narrow the filter (operation, force, reason)"),
        ));
    }
    let head = ["operation", "force", "event_id", "reason", "detail", "advice", "topic", "partition", "offset", "at"];
    let cells = rows.iter().map(|d| {
        [
            d.operation.clone().unwrap_or_default(),
            d.force.clone().unwrap_or_default(),
            d.event_id.clone().unwrap_or_default(),
            d.reason.clone(),
            d.detail.clone(),
            advice_for(&d.reason).to_string(),
            d.topic.clone(),
            d.partition.to_string(),
            d.offset.to_string(),
            d.at.map(fmt_millis).unwrap_or_default(),
        ]
    });
    // Senders wrote these texts: `csv_of` keeps a formula text in a spreadsheet.
    let body = csv_of(head, cells).map_err(ApiError::internal)?;
    let name = ["dead-letters", q.operation.unwrap_or("all"), q.force.unwrap_or("all-forces")].join("-");
    Ok(exports::download(body, &name).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_operation_belongs_to_the_operations_of_its_force() {
        let forces: BTreeSet<String> = ["MPS".to_string(), "TVP".to_string()].into();
        assert!(belongs("OP", Some(&forces), Some("OP"), Some("KNT")), "its own, whoever sent it");
        assert!(belongs("OP", Some(&forces), Some("OP-TYPO"), Some("TVP")));
        assert!(!belongs("OP", Some(&forces), Some("OP-TYPO"), Some("KNT")));
        assert!(!belongs("OP", Some(&forces), None, None));
        assert!(belongs("OP", None, Some("OP-TYPO"), Some("KNT")), "an operation open to every force");
    }
}
