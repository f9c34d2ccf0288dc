//! Before a run: each operation's pseudonymisation secret must be the one the
//! ledger published its records with. A different secret (a stray space in
//! an environment variable, an old value) would give every joint outcome a
//! new `joint_ref`, and the agent would withdraw and re-report them all.

use std::collections::BTreeSet;

use tracing::warn;

use super::ledger::{Ledger, LedgerError};
use super::pseudonym::fingerprint;
use crate::config::AgentSettings;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "operation {operation}: its pseudonymisation secret is not the one the ledger in {state_dir} published \
         with (fingerprint {recorded} then, {current} now). Publishing with it would withdraw every joint outcome \
         and report it again under new references. Check the secret (JOINTOPS__OPERATIONS__…__SECRET: white \
         space, an old value); if the partner forces agreed the change, run once with \
         --accept-secret-change {operation}"
    )]
    Changed { operation: String, state_dir: String, recorded: String, current: String },
    #[error("--accept-secret-change {0}: no such operation is configured for this agent")]
    NotConfigured(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Checks every configured operation's secret against the ledger, recording
/// the fingerprint of a secret nothing was published with yet, and of a
/// change `settings.accept_secret_change` names.
pub fn check_secrets(settings: &AgentSettings, ledger: &mut Ledger, now: i64) -> Result<(), SecretError> {
    let configured: BTreeSet<&String> = settings.operations.values().map(|o| &o.id).collect();
    if let Some(op) = settings.accept_secret_change.iter().find(|op| !configured.contains(op)) {
        return Err(SecretError::NotConfigured(op.clone()));
    }
    for op in settings.operations.values() {
        let Some(secret) = &op.secret else { continue };
        let current = fingerprint(secret.expose().as_bytes());
        match ledger.secret_fingerprint(&op.id)? {
            Some(recorded) if recorded == current => continue,
            // Nothing published under the recorded one: nothing to re-key.
            Some(recorded) if ledger.knows_operation(&op.id)? => {
                if !settings.accept_secret_change.contains(&op.id) {
                    return Err(SecretError::Changed {
                        operation: op.id.clone(),
                        state_dir: ledger.state_dir().display().to_string(),
                        recorded,
                        current,
                    });
                }
                warn!(operation = %op.id, %recorded, %current, "Secret change accepted: every joint outcome is withdrawn and reported again under its new reference.");
            }
            _ => {}
        }
        ledger.set_secret_fingerprint(&op.id, &current, now)?;
    }
    Ok(())
}
