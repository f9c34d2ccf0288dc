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
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::params::now;
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
        figures_at: None,
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

/// The prefix of a justification sent percent-encoded (RFC 8187's form):
/// browsers cannot put other than Latin-1 in a header, and a justification
/// may well be in Welsh.
const ENCODED: &str = "utf-8''";

/// The `X-Justification` header as sent, and its length in bytes when it
/// was cut: its bytes are kept (shown escaped by `audit`), only invalid
/// UTF-8 is replaced; the `utf-8''` form is decoded first.
fn justification(headers: &HeaderMap) -> (Option<String>, Option<usize>) {
    let Some(v) = headers.get("x-justification") else { return (None, None) };
    let bytes = v.as_bytes();
    let text = match bytes.get(..ENCODED.len()) {
        Some(p) if p.eq_ignore_ascii_case(ENCODED.as_bytes()) => percent_decode(&bytes[ENCODED.len()..]),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    };
    if text.trim().is_empty() {
        return (None, None);
    }
    let sent = text.len();
    (Some(cut(text, JUSTIFICATION_BYTES)), (sent > JUSTIFICATION_BYTES).then_some(sent))
}

fn percent_decode(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The token of `Authorization: Bearer …` (the scheme in any case, RFC 9110).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The grant of the presented token, revoked or not (the token itself is
/// never logged).
fn presented(state: &ApiState, headers: &HeaderMap) -> Result<Option<Grant>, StoreError> {
    let token = bearer(headers);
    match token {
        Some(t) => state.tokens(|r| r.find_token_any(&hash_token(t))),
        None => Ok(None),
    }
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
    // The API's description is public: it serves no figures.
    if path != "/api/v1" && !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
        return next.run(req).await;
    }
    let target = req.uri().path_and_query().map_or(path, |p| p.as_str()).to_string();
    let method = req.method().to_string();
    let (justification, cut_from) = justification(req.headers());
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
    let figures_at = Arc::new(Mutex::new(None));
    let caller = Caller { grant: grant.clone(), operation: operation.clone(), figures_at: figures_at.clone() };
    req.extensions_mut().insert(caller);
    let mut res = next.run(req).await;
    if let Some(sent) = cut_from {
        let said = format!("kept {JUSTIFICATION_BYTES} of {sent} bytes");
        res.headers_mut().insert("x-justification-truncated", said.parse().expect("ASCII"));
    }
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
        figures_at: lock(&figures_at).take(),
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
        figures_at: None,
    };
    match off_runtime(state, move |s| s.log_refused(entry)).await {
        Ok(()) => {
            let mut res = ApiError::unauthorized().into_response();
            res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"jointops\""));
            res
        }
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
    fn the_bearer_scheme_is_matched_in_any_case_and_encoded_justifications_are_decoded() {
        let h =
            |name: &str, v: &str| HeaderMap::from_iter([(name.parse().unwrap(), HeaderValue::from_str(v).unwrap())]);
        assert_eq!(bearer(&h("authorization", "bearer jo_1")), Some("jo_1"));
        assert_eq!(bearer(&h("authorization", "BEARER  jo_1 ")), Some("jo_1"));
        assert_eq!(bearer(&h("authorization", "Basic jo_1")), None);
        assert_eq!(bearer(&h("authorization", "Bearer ")), None);
        let (text, cut_from) =
            justification(&h("x-justification", "utf-8''Cyfarfod%20y%20wasg%20%E2%80%93%20D%C5%B5r"));
        assert_eq!((text.as_deref(), cut_from), (Some("Cyfarfod y wasg – Dŵr"), None));
        let long = format!("utf-8''{}", "%C3%A9".repeat(300));
        let (text, cut_from) = justification(&h("x-justification", &long));
        assert_eq!((text.map(|t| t.chars().count()), cut_from), (Some(251), Some(600)), "250 é and the ellipsis");
    }

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abc".into(), 5), "abc");
        assert_eq!(cut("ééé".into(), 3), "é…");
    }
}
