//! The agent's settings: its force, state folder, Kafka, the operations it
//! publishes for (with their secrets and windows), exports and `watch`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{check_bootstrap, default_topic, load, relative_to, ConfigError, RedactedMap, Secret};
use crate::domain::event::{check_force, check_operation};
use crate::domain::Millis;

/// A force's agent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    pub force: String,
    /// Ledger of what was published, and the outbox of what is not yet
    /// acknowledged; a relative path is taken from the config file's folder.
    pub state_dir: PathBuf,
    pub kafka: AgentKafka,
    /// Keyed by a local alias (lowercase, `_`), so that a secret can arrive as
    /// `JOINTOPS__OPERATIONS__<ALIAS>__SECRET`.
    #[serde(default)]
    pub operations: BTreeMap<String, AgentOperation>,
    /// Most messages the outbox may hold: a file that would take it over is
    /// refused whole (never partly accepted, never dropped later), so a long
    /// broker outage cannot fill the disk.
    #[serde(default = "default_spool_limit")]
    pub spool_limit: u64,
    #[serde(default)]
    pub watch: WatchSettings,
    /// Operations whose new pseudonymisation secret is accepted although the
    /// ledger published with another (`--accept-secret-change`): only ever
    /// from the command line, so that no file keeps accepting changes.
    #[serde(skip)]
    pub accept_secret_change: BTreeSet<String>,
    #[serde(default)]
    pub exports: ExportSettings,
    /// The force's Ed25519 key file (`jointops keys generate`), readable by
    /// its owner only; relative to the config file's folder. Every record is
    /// signed with it (contract §7).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    #[serde(default)]
    pub metrics: super::MetricsSettings,
}

/// How the agent reads exports that spreadsheets and ETL jobs write.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSettings {
    /// Refuse a file with an unknown column (or a row with an unknown JSON
    /// member) instead of ignoring it with a warning.
    #[serde(default)]
    pub strict_columns: bool,
    #[serde(default)]
    pub csv_delimiter: CsvDelimiter,
}

/// `"auto"` (from the header line), `","`, `";"` or `"tab"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum CsvDelimiter {
    #[default]
    Auto,
    Byte(u8),
}

impl TryFrom<String> for CsvDelimiter {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(CsvDelimiter::Auto),
            "," => Ok(CsvDelimiter::Byte(b',')),
            ";" => Ok(CsvDelimiter::Byte(b';')),
            "tab" | "\t" => Ok(CsvDelimiter::Byte(b'\t')),
            other => Err(format!("csv_delimiter {other:?} is not one of \"auto\", \",\", \";\", \"tab\"")),
        }
    }
}

pub fn default_spool_limit() -> u64 {
    1_000_000
}

/// Longer than the pauses seen in export jobs that write in place (3 s),
/// and short beside how often exports arrive.
pub fn default_settle_ms() -> u64 {
    5_000
}

/// `agent watch`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchSettings {
    /// How long a file in the inbox must keep its size and modification time
    /// (and no process hold it open for writing) before it is taken: the
    /// inbox contract (complete once renamed in) is checked, not assumed.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings { settle_ms: default_settle_ms() }
    }
}

pub fn default_give_up_after_s() -> u64 {
    60
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentKafka {
    /// Left empty in the file: `kafka.properties`' `bootstrap.servers`, else
    /// 127.0.0.1:9092 (filled in at load).
    #[serde(default)]
    pub bootstrap: String,
    /// A librdkafka properties file (`key=value`, e.g. one that
    /// deploy/local/kafka.sh leaves per principal), relative to the config's
    /// folder; `[kafka.librdkafka]` entries win over its settings.
    #[serde(default)]
    pub properties: Option<PathBuf>,
    #[serde(default = "default_topic")]
    pub topic: String,
    /// How long `publish` and `resend` wait for an unreachable broker before
    /// they stop, keeping the outbox for the next run.
    #[serde(default = "default_give_up_after_s")]
    pub give_up_after_s: u64,
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentOperation {
    /// The operation code.
    pub id: String,
    /// The operation's shared pseudonymisation secret.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Or a file that holds it (a mounted container secret), readable by
    /// its owner only; one trailing newline is not part of the secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The operation's window `[starts, ends)` (RFC 3339 in the file), as the
    /// hub has it: rows outside it are rejected here rather than
    /// dead-lettered there, and a ledger new to an operation that has
    /// started is said aloud.
    #[serde(default, deserialize_with = "rfc3339")]
    pub starts: Option<Millis>,
    #[serde(default, deserialize_with = "rfc3339")]
    pub ends: Option<Millis>,
    /// The forces taking part, as the hub has them; absent: any force.
    #[serde(default)]
    pub forces: Option<BTreeSet<String>>,
}

impl AgentOperation {
    /// An operation with its secret, without window or forces.
    pub fn new(id: impl Into<String>, secret: Secret) -> Self {
        AgentOperation {
            id: id.into(),
            secret: Some(secret),
            secret_file: None,
            starts: None,
            ends: None,
            forces: None,
        }
    }
}

/// An optional RFC 3339 instant, read once into milliseconds.
fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
    let text = String::deserialize(d)?;
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|e| serde::de::Error::custom(format!("{text:?} is not RFC 3339 ({e})")))
}

impl fmt::Debug for AgentKafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKafka")
            .field("bootstrap", &self.bootstrap)
            .field("properties", &self.properties)
            .field("topic", &self.topic)
            .field("give_up_after_s", &self.give_up_after_s)
            .field("librdkafka", &RedactedMap(&self.librdkafka))
            .finish()
    }
}

/// Fills `op.secret` from `op.secret_file`, which must be its owner's only.
fn read_secret_file(config: &Path, alias: &str, op: &mut AgentOperation) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(file) = op.secret_file.take().map(|f| relative_to(config, &f)) else { return Ok(()) };
    let invalid = |message: String| ConfigError::Invalid { path: config.into(), message };
    if op.secret.is_some() {
        return Err(invalid(format!("operations.{alias}: both secret and secret_file are set: keep one")));
    }
    let unreadable = |e: std::io::Error| invalid(format!("operations.{alias}.secret_file {}: {e}", file.display()));
    let mode = std::fs::metadata(&file).map_err(unreadable)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let key = format!("operations.{alias}.secret_file");
        return Err(ConfigError::Exposed { path: file, key, mode });
    }
    let text = std::fs::read_to_string(&file).map_err(unreadable)?;
    let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    op.secret = Some(Secret::new(text));
    op.secret_file = Some(file);
    Ok(())
}

impl AgentSettings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut s: AgentSettings = load(path)?;
        let k = &mut s.kafka;
        super::properties::apply(path, &mut k.properties, &mut k.bootstrap, &mut k.librdkafka)?;
        s.state_dir = relative_to(path, &s.state_dir);
        s.signing_key = s.signing_key.map(|k| relative_to(path, &k));
        for (alias, op) in &mut s.operations {
            read_secret_file(path, alias, op)?;
        }
        s.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        check_force(&self.force).map_err(|e| e.to_string())?;
        if self.spool_limit == 0 {
            return Err("spool_limit must be at least 1".into());
        }
        check_bootstrap(&self.kafka.bootstrap).map_err(|e| format!("kafka.bootstrap: {e}"))?;
        if self.kafka.give_up_after_s == 0 {
            return Err("kafka.give_up_after_s must be at least 1".into());
        }
        let mut ids = BTreeSet::new();
        for (alias, op) in &self.operations {
            check_operation(&op.id).map_err(|e| format!("operations.{alias}: {e}"))?;
            if !ids.insert(&op.id) {
                return Err(format!("operation {} is configured twice", op.id));
            }
            if let (Some(starts), Some(ends)) = (op.starts, op.ends) {
                if starts >= ends {
                    return Err(format!(
                        "operations.{alias}: starts {} is not before ends {}",
                        crate::domain::fmt_millis(starts),
                        crate::domain::fmt_millis(ends)
                    ));
                }
            }
            for f in op.forces.iter().flatten() {
                check_force(f).map_err(|e| format!("operations.{alias}.forces: {e}"))?;
            }
            let env = format!("JOINTOPS__OPERATIONS__{}__SECRET", alias.to_uppercase());
            let Some(secret) = op.secret.as_ref().map(Secret::expose).filter(|s| !s.is_empty()) else {
                return Err(format!("operations.{alias}.secret is not set: pass it as {env}"));
            };
            // A stray space would silently give every joint outcome a new reference.
            if secret.trim() != secret {
                return Err(format!(
                    "operations.{alias}.secret begins or ends with white space: remove it (check {env})"
                ));
            }
        }
        Ok(())
    }

    /// The secret of an operation code, if this agent takes part in it.
    pub fn secret_for(&self, operation: &str) -> Option<&Secret> {
        self.operation(operation).and_then(|o| o.secret.as_ref())
    }

    /// An operation by its code, if this agent takes part in it.
    pub fn operation(&self, operation: &str) -> Option<&AgentOperation> {
        self.operations.values().find(|o| o.id == operation)
    }
}
