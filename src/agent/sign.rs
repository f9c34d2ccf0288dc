//! The agent's signing key and the two headers it puts on every record
//! (contract §7). Signing happens as a record is handed to Kafka, not when
//! it is planned: the outbox keeps the key and value, which is all a
//! signature covers, so `agent resend` signs again with the current key
//! and a rotated key needs nothing rewritten.

use std::path::Path;
use std::sync::Arc;

use rdkafka::message::{Header, OwnedHeaders};
use tracing::warn;

use crate::config::AgentSettings;
use crate::trust::{self, LoadedKey, KEY_ID_HEADER, SIGNATURE_HEADER};

/// The environment variable that may carry the key file's text itself
/// (a container's secret), instead of `signing_key` naming a file.
pub const KEY_ENV: &str = "JOINTOPS_SIGNING_KEY";

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Key(#[from] trust::KeyFileError),
    #[error("the signing key {id} belongs to {key_force}, and this agent publishes for {force}: the hub would refuse every record (bad-signature)")]
    OtherForce { id: String, key_force: String, force: String },
    #[error("both signing_key ({path}) and {KEY_ENV} are set: give the key one way only")]
    Twice { path: String },
}

/// The agent's key: from the file `signing_key` names, or from
/// `JOINTOPS_SIGNING_KEY`; none, with a warning, when neither is set.
pub fn load(settings: &AgentSettings) -> Result<Option<Arc<LoadedKey>>, SigningError> {
    let from_env = std::env::var(KEY_ENV).ok().filter(|t| !t.trim().is_empty());
    let key = match (&settings.signing_key, from_env) {
        (Some(path), Some(_)) => return Err(SigningError::Twice { path: path.display().to_string() }),
        (Some(path), None) => trust::load_signing_key(path)?,
        (None, Some(text)) => trust::parse_signing_key(&text, Path::new(KEY_ENV))?,
        (None, None) => {
            warn!("No signing_key: records go out unsigned, and a hub that requires signatures dead-letters them as unsigned.");
            return Ok(None);
        }
    };
    if key.force != settings.force {
        return Err(SigningError::OtherForce { id: key.id, key_force: key.force, force: settings.force.clone() });
    }
    Ok(Some(Arc::new(key)))
}

/// The headers of every `(seq, key, value)` of a batch, in its order,
/// signed on every core: at some 20 µs a signature, signing is most of what
/// a large signed export costs the agent.
pub fn headers_of_batch(key: &LoadedKey, batch: &[(i64, &str, &[u8])]) -> Vec<OwnedHeaders> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = batch.len().div_ceil(cores).max(1);
    std::thread::scope(|s| {
        let parts: Vec<_> = batch
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(|(_, k, v)| headers(key, k, v)).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("signing does not panic")).collect()
    })
}

/// The `jointops-key-id` and `jointops-signature` headers of one record.
fn headers(key: &LoadedKey, record_key: &str, value: &[u8]) -> OwnedHeaders {
    let signature = trust::sign(&key.key, record_key.as_bytes(), value);
    OwnedHeaders::new_with_capacity(2)
        .insert(Header { key: KEY_ID_HEADER, value: Some(key.id.as_bytes()) })
        .insert(Header { key: SIGNATURE_HEADER, value: Some(&signature[..]) })
}
