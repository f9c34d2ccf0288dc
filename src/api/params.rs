//! Query parameters, strictly: an unknown parameter is a 400 that names the
//! known ones (a misspelt `as_off` must not silently serve today's figures),
//! and moments are RFC 3339, never in the future.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::ApiError;
use crate::domain::fmt_millis;

/// A query string parsed into `T` (whose fields are the known parameters).
pub struct Strict<T>(pub T);

impl<T: DeserializeOwned + Known, S: Send + Sync> FromRequestParts<S> for Strict<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        for (name, _) in form_urlencoded::parse(query.as_bytes()) {
            if !T::NAMES.contains(&name.as_ref()) {
                let known = if T::NAMES.is_empty() { "none".to_string() } else { T::NAMES.join(", ") };
                return Err(ApiError::bad_request(format!("unknown parameter {name:?} (known: {known})")));
            }
        }
        serde_urlencoded::from_str(query)
            .map(Strict)
            .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
    }
}

/// The parameters a query type knows.
pub trait Known {
    const NAMES: &'static [&'static str];
}

#[derive(Deserialize)]
pub struct NoParams {}

impl Known for NoParams {
    const NAMES: &'static [&'static str] = &[];
}

/// A moment named by parameter `name`, at or before `now` (ms).
pub fn moment(name: &str, text: &str, now: i64) -> Result<i64, ApiError> {
    let at = crate::config::parse_instant(name, text).map_err(|e| {
        // `+01:00` sent unencoded arrives as " 01:00": say so.
        if text.contains(' ') {
            ApiError::bad_request(format!("{e}; a '+' in the offset must be sent as %2B (it arrived as a space)"))
        } else {
            ApiError::bad_request(e)
        }
    })?;
    if at > now {
        return Err(ApiError::bad_request(format!(
            "{name} {} is in the future (the hub's time is {}): figures exist only up to now",
            fmt_millis(at),
            fmt_millis(now)
        )));
    }
    Ok(at)
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_is_rfc_3339_not_in_the_future_and_a_lost_plus_is_explained() {
        let now = 1_697_000_000_000;
        assert_eq!(moment("as_of", "2023-10-11T04:53:20Z", now).ok(), Some(now));
        let ApiError(_, lost) = moment("as_of", "2023-10-11T05:53:20 01:00", now).unwrap_err();
        assert!(lost.contains("%2B"), "{lost}");
        let ApiError(_, future) = moment("to", "2023-10-11T04:53:21Z", now).unwrap_err();
        assert!(future.contains("in the future") && future.contains("2023-10-11T04:53:20.000Z"), "{future}");
    }
}
