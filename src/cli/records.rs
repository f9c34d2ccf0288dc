//! `token` and `audit`: the hub's own records (tokens, the access log).

use std::path::Path;
use std::process::ExitCode;

use super::TokenCommand;
use crate::access::{new_token, token_id, Grant, Role};
use crate::config::HubSettings;
use crate::report::Format;
use crate::store::{open_records, AccessStore, RecordsStore};

/// The records of an existing hub: reading or revoking never creates a store
/// (a mistyped path would otherwise show an empty, healthy-looking one).
fn existing(settings: &HubSettings) -> anyhow::Result<RecordsStore> {
    let (records, store) = (settings.store.records_path(), &settings.store.path);
    anyhow::ensure!(
        records.exists() || store.exists(),
        "no store at {} (nor its records at {}): is store.path right, and has the hub run yet?",
        store.display(),
        records.display()
    );
    Ok(open_records(&settings.store)?)
}

pub fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Issue { config, role, operations, label } => {
            let settings = HubSettings::load(&config)?;
            let role = Role::parse(&role).map_err(anyhow::Error::msg)?;
            let known = settings.operations().map_err(anyhow::Error::msg)?;
            for op in &operations {
                let Some(o) = known.get(op) else {
                    anyhow::bail!("operation {op:?} is not in {}", config.display());
                };
                // A liaison token for an operation their force is not in would grant nothing.
                if let (Role::Force(force), Some(forces)) = (&role, &o.forces) {
                    anyhow::ensure!(
                        forces.contains(force),
                        "force {force} does not take part in {op} (its forces are {})",
                        forces.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            let (token, hash) = new_token();
            let grant = Grant {
                id: token_id(&hash),
                role,
                operations: (!operations.is_empty()).then_some(operations),
                label,
                created_at: chrono::Utc::now().timestamp_millis(),
                revoked_at: None,
            };
            open_records(&settings.store)?.add_token(&hash, &grant)?;
            crate::telemetry::say(&format!("Token {} issued for {}; it is shown only now:", grant.id, grant.role));
            println!("{token}");
        }
        TokenCommand::List { config, format } => {
            let settings = HubSettings::load(&config)?;
            print!("{}", crate::audit::tokens(&existing(&settings)?.tokens()?, format)?);
        }
        TokenCommand::Revoke { config, id } => {
            let settings = HubSettings::load(&config)?;
            let done = existing(&settings)?.revoke_token(&id, chrono::Utc::now().timestamp_millis())?;
            anyhow::ensure!(done, "no active token {id}");
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn audit(config: &Path, since: Option<&str>, format: Format) -> anyhow::Result<ExitCode> {
    let settings = HubSettings::load(config)?;
    let since = since.map(|t| crate::config::parse_instant("--since", t)).transpose().map_err(anyhow::Error::msg)?;
    let log = existing(&settings)?.access_log(since.unwrap_or(i64::MIN))?;
    print!("{}", crate::audit::access_log(&log, format)?);
    Ok(ExitCode::SUCCESS)
}

pub fn verify(config: &Path) -> anyhow::Result<ExitCode> {
    let settings = HubSettings::load(config)?;
    let check = existing(&settings)?.verify_chain()?;
    match check.first_bad {
        None => {
            println!("ok: {} entries chained; head {}", check.entries, check.head);
            Ok(ExitCode::SUCCESS)
        }
        Some((seq, why)) => {
            println!("entry {seq} does not fit: {why} ({} entries before it are intact)", check.entries);
            Ok(ExitCode::FAILURE)
        }
    }
}
