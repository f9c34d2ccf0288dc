//! The access log's side of every request under `/api/v1/`: find the
//! caller, let the route answer, and record the answer (status, path with
//! query string, who, why) before it leaves. If the record cannot be
//! written, the answer is replaced by 503: figures are never served
//! unrecorded.
//!
//! Requests without a valid token are refused here, and recorded with
//! bounded size: path and justification cut to [`REFUSED_FIELD_BYTES`], and
//! at most [`REFUSED_PER_WINDOW`] itemised entries per minute; beyond that
//! they are counted and one summary entry per minute says how many there were.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{lock, ApiError, ApiState, Caller};
use crate::access::{hash_token, Grant};
use crate::store::{Access, AccessStore, StoreError};

/// Longest path or justification kept for a request without a valid token.
pub const REFUSED_FIELD_BYTES: usize = 256;
/// Requests without a valid token itemised per window; the rest are counted.
pub const REFUSED_PER_WINDOW: u32 = 60;
const WINDOW_MS: i64 = 60_000;
/// Justifications of authenticated callers are kept up to this length.
const JUSTIFICATION_BYTES: usize = 500;

/// Counts refused requests beyond the itemised ones, per window.
pub(super) struct FloodGate {
    start: i64,
    itemised: u32,
    suppressed: u64,
}

/// Requests that were counted, not itemised: `count` between `from` and `to` (ms).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Suppressed {
    from: i64,
    to: i64,
    count: u64,
}

impl FloodGate {
    pub(super) fn new() -> Self {
        FloodGate { start: i64::MIN, itemised: 0, suppressed: 0 }
    }

    /// For one refused request at `now`: the summary of a window that has
    /// ended (if it counted any), and whether this request is itemised.
    fn admit(&mut self, now: i64) -> (Option<Suppressed>, bool) {
        let mut ended = None;
        if now >= self.start.saturating_add(WINDOW_MS) {
            ended = self.take(self.start.saturating_add(WINDOW_MS));
            (self.start, self.itemised) = (now, 0);
        }
        if self.itemised < REFUSED_PER_WINDOW {
            self.itemised += 1;
            (ended, true)
        } else {
            self.suppressed += 1;
            (ended, false)
        }
    }

    /// The count so far, to be written (at a window's end, or at shutdown).
    fn take(&mut self, to: i64) -> Option<Suppressed> {
        let count = std::mem::take(&mut self.suppressed);
        (count > 0).then_some(Suppressed { from: self.start, to, count })
    }
}

fn summary_entry(s: &Suppressed) -> Access {
    Access {
        seq: 0,
        at: s.to,
        token_id: None,
        role: None,
        method: "*".into(),
        path: "/api/v1/ (not itemised)".into(),
        operation: None,
        status: StatusCode::UNAUTHORIZED.as_u16(),
        justification: Some(format!(
            "{} more requests without a valid token from {} to {}",
            s.count,
            crate::domain::fmt_millis(s.from),
            crate::domain::fmt_millis(s.to)
        )),
    }
}

/// At most `max` bytes of `s`, cut on a character boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The `X-Justification` header as sent: its bytes are kept (shown escaped
/// by `audit`), only invalid UTF-8 is replaced.
fn justification(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-justification")?;
    let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
    (!text.trim().is_empty()).then(|| cut(text, JUSTIFICATION_BYTES))
}

/// The grant of the token in `Authorization: Bearer …`, revoked or not (the
/// token itself is never logged).
fn presented(state: &ApiState, headers: &HeaderMap) -> Result<Option<Grant>, StoreError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match token {
        Some(t) => state.tokens(|r| r.find_token_any(&hash_token(t))),
        None => Ok(None),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl ApiState {
    /// Writes one entry; on failure the caller must not serve the answer.
    fn log(&self, entry: &Access) -> Result<(), StoreError> {
        self.records(|r| r.log_access(entry)).inspect_err(|e| {
            // An unrecorded request is a compliance failure: make it loud.
            tracing::error!(error = %e, path = %entry.path, "Access not recorded; answering 503.");
        })
    }

    /// Records a request without a valid token, within the flood bounds.
    fn log_refused(&self, entry: Access) -> Result<(), StoreError> {
        let (ended, itemise) = lock(&self.refused).admit(entry.at);
        if let Some(s) = ended {
            self.log(&summary_entry(&s))?;
        }
        if itemise {
            self.log(&entry)?;
        }
        Ok(())
    }

    /// Writes the count of refused requests not yet summarised (at shutdown).
    pub(super) fn flush_refused(&self) {
        if let Some(s) = lock(&self.refused).take(now()) {
            let _ = self.log(&summary_entry(&s));
        }
    }
}

pub(super) async fn logged(State(state): State<Arc<ApiState>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path != "/api/v1" && !path.starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let target = req.uri().path_and_query().map_or(path, |p| p.as_str()).to_string();
    let method = req.method().to_string();
    let justification = justification(req.headers());
    let presented = match presented(&state, req.headers()) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "Token store unreadable; answering 503.");
            return ApiError::unavailable().into_response();
        }
    };
    let (grant, revoked) = match presented {
        Some(g) if g.revoked_at.is_none() => (Some(g), None),
        other => (None, other),
    };
    let Some(grant) = grant else {
        return refuse(&state, revoked, method, target, justification).await;
    };
    let operation = Arc::new(Mutex::new(None));
    req.extensions_mut().insert(Caller { grant: grant.clone(), operation: operation.clone() });
    let res = next.run(req).await;
    let entry = Access {
        seq: 0,
        at: now(),
        token_id: Some(grant.id),
        role: Some(grant.role.to_string()),
        method,
        path: target,
        operation: lock(&operation).take(),
        status: res.status().as_u16(),
        justification,
    };
    match off_runtime(&state, move |s| s.log(&entry)).await {
        Ok(()) => res,
        Err(_) => ApiError::unavailable().into_response(),
    }
}

/// The 401 for a request without a valid token, recorded within the flood
/// bounds. A revoked token is named (its id, found by the full hash), so the
/// log shows who still tries one; unknown tokens name nobody.
async fn refuse(
    state: &Arc<ApiState>,
    revoked: Option<Grant>,
    method: String,
    target: String,
    justification: Option<String>,
) -> Response {
    let entry = Access {
        seq: 0,
        at: now(),
        token_id: revoked.as_ref().map(|g| g.id.clone()),
        role: revoked.as_ref().map(|g| g.role.to_string()),
        method: cut(method, 16),
        path: cut(target, REFUSED_FIELD_BYTES),
        operation: None,
        status: StatusCode::UNAUTHORIZED.as_u16(),
        justification: justification.map(|j| cut(j, REFUSED_FIELD_BYTES)),
    };
    match off_runtime(state, move |s| s.log_refused(entry)).await {
        Ok(()) => ApiError::unauthorized().into_response(),
        Err(_) => ApiError::unavailable().into_response(),
    }
}

/// Each entry is fsync'd (the records file is `synchronous=FULL`) before the
/// answer leaves: that wait belongs on a blocking thread, not on the
/// runtime's workers that drive every other connection and stream.
async fn off_runtime(
    state: &Arc<ApiState>,
    write: impl FnOnce(&ApiState) -> Result<(), StoreError> + Send + 'static,
) -> Result<(), ()> {
    let state = state.clone();
    match tokio::task::spawn_blocking(move || write(&state)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(()),
        Err(e) => {
            tracing::error!(error = %e, "Access-log writer failed; answering 503.");
            Err(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_itemised_up_to_the_limit_then_counted_once_per_window() {
        let mut g = FloodGate::new();
        let t0 = 1_000_000;
        let itemised = (0..1000).filter(|i| g.admit(t0 + i).1).count();
        assert_eq!(itemised, REFUSED_PER_WINDOW as usize);
        let (ended, itemise) = g.admit(t0 + WINDOW_MS);
        assert_eq!(ended, Some(Suppressed { from: t0, to: t0 + WINDOW_MS, count: 1000 - 60 }));
        assert!(itemise);
        assert_eq!(g.take(t0 + WINDOW_MS + 5), None, "nothing counted in the new window yet");
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abc".into(), 5), "abc");
        assert_eq!(cut("ééé".into(), 3), "é…");
    }
}
