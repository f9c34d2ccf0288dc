//! Freshness that tells the truth: whether the hub's rollup is alive and
//! caught up (its heartbeat and lag), how old an operation's data is, and
//! where each force stands. Separate from the browser's own connection,
//! which only the page can know.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::params::{now, NoParams, Strict};
use super::routes::allow;
use super::{ApiError, ApiState, Caller};
use crate::access::Role;
use crate::domain::fmt_millis;
use crate::store::{Activity, DeadLetterQuery, RollupStatus, Tally, TotalsReader};

/// No heartbeat for this long: the rollup is stopped (or stuck). The rollup
/// writes one every 2 s, so a stopped one shows within ten seconds.
pub const STALE_AFTER_MS: i64 = 10_000;
/// More input records than this not yet counted: the rollup is behind.
pub const BEHIND_AFTER: i64 = 1_000;
/// A force whose last counted event is older than this is called silent.
pub const SILENT_AFTER_HOURS: i64 = 6;
const HOUR_MS: i64 = 3_600_000;

fn state_of(s: Option<&RollupStatus>, now: i64) -> &'static str {
    match s {
        None => "never",
        Some(s) if now - s.heartbeat_at > STALE_AFTER_MS => "stopped",
        Some(s) if s.lag.is_some_and(|l| l > BEHIND_AFTER) => "behind",
        Some(_) => "live",
    }
}

fn rollup_json(s: Option<RollupStatus>, now: i64) -> Value {
    json!({
        "state": state_of(s.as_ref(), now),
        "heartbeat_at": s.map(|s| fmt_millis(s.heartbeat_at)),
        "last_commit_at": s.and_then(|s| s.last_commit_at).map(fmt_millis),
        "lag": s.and_then(|s| s.lag),
        "stale_after_ms": STALE_AFTER_MS,
        "behind_after": BEHIND_AFTER,
    })
}

fn rollup(state: &ApiState) -> Result<Value, ApiError> {
    let s = state.read(|s| s.rollup_status()).map_err(ApiError::internal)?;
    Ok(rollup_json(s, now()))
}

pub async fn hub(
    State(state): State<Arc<ApiState>>,
    Strict(NoParams {}): Strict<NoParams>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "now": fmt_millis(now()), "rollup": rollup(&state)? })))
}

pub async fn whoami(Extension(c): Extension<Caller>, Strict(NoParams {}): Strict<NoParams>) -> Json<Value> {
    let g = &c.grant;
    let (role, force) = match &g.role {
        Role::Coordinator => ("coordinator", None),
        Role::Force(code) => ("force", Some(code.clone())),
    };
    Json(json!({ "token_id": g.id, "label": g.label, "role": role, "force": force, "operations": g.operations }))
}

/// One force's row: what was counted, when, and what was refused.
fn force_row(force: &str, act: Option<&Activity>, dead: BTreeMap<String, i64>, now: i64) -> Value {
    let last = act.map(|a| a.last_at).filter(|&at| at > 0);
    let hours = last.map(|at| (now - at).max(0) / HOUR_MS);
    let state = match hours {
        None => "no-data",
        Some(h) if h >= SILENT_AFTER_HOURS => "silent",
        Some(_) => "reporting",
    };
    json!({
        "force": force,
        "events": act.map_or(0, |a| a.events),
        "last_event_at": last.map(fmt_millis),
        "state": state,
        "silent_hours": hours,
        "dead_letters": dead,
    })
}

/// The forces of an operation's status: its configured list, and any other
/// force that sent it something, counted or not.
fn forces_of(configured: Option<&BTreeSet<String>>, acts: &[Activity], tally: &[Tally]) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = configured.cloned().unwrap_or_default();
    all.extend(acts.iter().map(|a| a.force.clone()));
    all.extend(tally.iter().filter_map(|t| t.force.clone()));
    all
}

pub async fn operation(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Extension(c): Extension<Caller>,
    Strict(NoParams {}): Strict<NoParams>,
) -> Result<Json<Value>, ApiError> {
    allow(&state, &c, &id)?;
    operation_status(&state, &c, &id).map(Json)
}

/// The operation's status document, for a caller already allowed to read
/// it: also sent on the live stream every few seconds, so that an open
/// page learns of a stopped rollup without a request (and a log entry) each time.
pub(super) fn operation_status(state: &ApiState, c: &Caller, id: &str) -> Result<Value, ApiError> {
    let id = id.to_string();
    let configured = state.operations.get(&id).and_then(|o| o.forces.clone());
    let acts = state.read(|s| s.activity(&id)).map_err(ApiError::internal)?;
    let q = DeadLetterQuery { operation: Some(&id), ..Default::default() };
    let tally: Vec<Tally> = state
        .read(|s| s.dead_letter_tally(&q))
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|t| super::dead_letters::belongs(&id, configured.as_ref(), t.operation.as_deref(), t.force.as_deref()))
        .collect();
    let now = now();
    let all = forces_of(configured.as_ref(), &acts, &tally);
    let visible: Vec<&String> = all.iter().filter(|f| c.grant.may_see_force(f)).collect();
    // Partner forces hidden from a liaison: not a force outside the
    // operation that happened to send it something.
    let partner = |f: &String| configured.as_ref().is_none_or(|c| c.contains(f));
    let hidden = all.iter().filter(|f| !c.grant.may_see_force(f) && partner(f)).count();
    let rows: Vec<Value> = visible
        .iter()
        .map(|f| {
            let mut dead = BTreeMap::new();
            for t in tally.iter().filter(|t| t.force.as_deref() == Some(f.as_str())) {
                *dead.entry(t.reason.clone()).or_insert(0) += t.count;
            }
            force_row(f, acts.iter().find(|a| &a.force == *f), dead, now)
        })
        .collect();
    Ok(json!({
        "operation": id,
        "now": fmt_millis(now),
        "rollup": rollup(state)?,
        "last_event_at": acts.iter().map(|a| a.last_at).filter(|&at| at > 0).max().map(fmt_millis),
        "silent_after_hours": SILENT_AFTER_HOURS,
        "hidden_forces": hidden,
        "forces": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollup_is_stopped_after_missed_heartbeats_and_behind_when_lagging() {
        let beat = |at, lag| Some(RollupStatus { heartbeat_at: at, last_commit_at: None, lag });
        assert_eq!(state_of(None, 0), "never");
        assert_eq!(state_of(beat(0, Some(0)).as_ref(), STALE_AFTER_MS), "live");
        assert_eq!(state_of(beat(0, Some(0)).as_ref(), STALE_AFTER_MS + 1), "stopped");
        assert_eq!(state_of(beat(0, Some(BEHIND_AFTER + 1)).as_ref(), 1), "behind");
        assert_eq!(state_of(beat(0, None).as_ref(), 1), "live", "lag unknown while the broker is silent");
    }

    #[test]
    fn a_force_is_reporting_silent_or_without_data() {
        let act = |last_at| Activity { operation: "OP".into(), force: "MPS".into(), events: 3, last_at };
        let now = 100 * HOUR_MS;
        assert_eq!(force_row("KNT", None, BTreeMap::new(), now)["state"], "no-data");
        assert_eq!(force_row("MPS", Some(&act(now - HOUR_MS)), BTreeMap::new(), now)["state"], "reporting");
        let silent = force_row("MPS", Some(&act(now - 7 * HOUR_MS - 1)), BTreeMap::new(), now);
        assert_eq!((silent["state"].as_str(), silent["silent_hours"].as_i64()), (Some("silent"), Some(7)));
    }
}
