//! The `Settings` trees of the hub and the agent: loaded from a TOML file
//! layered with `JOINTOPS__…` environment variables, validated once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::event::{check_force, check_operation};
use crate::domain::{Millis, Operation, Operations};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load {path}: {source}")]
    Load { path: PathBuf, source: config::ConfigError },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A secret that never prints: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

fn default_bootstrap() -> String {
    "127.0.0.1:9092".into()
}
fn default_topic() -> String {
    "jointops.outcomes".into()
}
fn default_dlq_topic() -> String {
    "jointops.outcomes.dlq".into()
}
fn default_group() -> String {
    "jointops-rollup".into()
}
fn default_partitions() -> i32 {
    6
}
fn default_store_path() -> PathBuf {
    PathBuf::from("data/jointops.sqlite")
}
fn default_batch_size() -> usize {
    5000
}
fn default_batch_ms() -> u64 {
    200
}
fn default_stall_seconds() -> u64 {
    30
}

/// The hub: rollup, report and (later) the API read this.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSettings {
    pub kafka: HubKafka,
    #[serde(default)]
    pub store: StoreSettings,
    #[serde(default)]
    pub rollup: RollupSettings,
    #[serde(default)]
    pub api: ApiSettings,
    #[serde(default)]
    pub operations: Vec<OperationSettings>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_max_connections() -> usize {
    256
}
fn default_max_streams() -> usize {
    64
}
fn default_max_streams_per_token() -> usize {
    4
}
fn default_max_asof() -> usize {
    2
}
fn default_header_timeout_ms() -> u64 {
    10_000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Address `jointops serve` listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Open connections at most; further clients wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Live streams open at once, in all and per token (429 beyond).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    #[serde(default = "default_max_streams_per_token")]
    pub max_streams_per_token: usize,
    /// As-of figures recomputed at once (each replays the history in
    /// memory); 429 beyond.
    #[serde(default = "default_max_asof")]
    pub max_asof: usize,
    /// A connection that has not sent a request's headers in whole within
    /// this time is closed.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// PEM certificate chain and private key: with both, the API speaks
    /// only TLS (HTTPS). Relative paths are taken from the config's folder.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: default_listen(),
            max_connections: default_max_connections(),
            max_streams: default_max_streams(),
            max_streams_per_token: default_max_streams_per_token(),
            max_asof: default_max_asof(),
            header_timeout_ms: default_header_timeout_ms(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubKafka {
    #[serde(default = "default_bootstrap")]
    pub bootstrap: String,
    #[serde(default = "default_topic")]
    pub topic: String,
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    #[serde(default = "default_group")]
    pub group: String,
    /// Partitions for topics the rollup creates when they are missing.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Raw librdkafka client settings, passed through unchanged (TLS, SASL…).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// SQLite file; a relative path is taken from the config file's folder.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// The hub's own records (tokens, the access log), which no rebuild
    /// replaces: `<path>.records` unless given.
    #[serde(default)]
    pub records: Option<PathBuf>,
}

impl StoreSettings {
    pub fn records_path(&self) -> PathBuf {
        self.records.clone().unwrap_or_else(|| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(".records");
            PathBuf::from(name)
        })
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings { path: default_store_path(), records: None }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupSettings {
    /// Events per store transaction at most.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// How long a batch may wait before it is written, in milliseconds.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// Seconds without a record, while the topic has more, after which the
    /// Kafka consumer is replaced by a fresh one.
    #[serde(default = "default_stall_seconds")]
    pub stall_seconds: u64,
}

impl Default for RollupSettings {
    fn default() -> Self {
        RollupSettings {
            batch_size: default_batch_size(),
            batch_ms: default_batch_ms(),
            stall_seconds: default_stall_seconds(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationSettings {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// RFC 3339, inclusive.
    pub starts: String,
    /// RFC 3339, exclusive.
    pub ends: String,
    /// The forces taking part; absent: any force.
    #[serde(default)]
    pub forces: Option<Vec<String>>,
}

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
}

pub fn default_spool_limit() -> u64 {
    1_000_000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentKafka {
    #[serde(default = "default_bootstrap")]
    pub bootstrap: String,
    #[serde(default = "default_topic")]
    pub topic: String,
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
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("JOINTOPS").prefix_separator("__").separator("__").try_parsing(false),
        )
        .build()
        .map_err(|source| ConfigError::Load { path: path.into(), source })?;
    built.try_deserialize().map_err(|source| ConfigError::Load { path: path.into(), source })
}

fn relative_to(config: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config.parent().unwrap_or(Path::new(".")).join(p)
    }
}

pub fn parse_instant(field: &str, text: &str) -> Result<Millis, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{field}: {text:?} is not RFC 3339 ({e})"))
}

impl HubSettings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut s: HubSettings = load(path)?;
        s.store.path = relative_to(path, &s.store.path);
        s.store.records = s.store.records.as_deref().map(|r| relative_to(path, r));
        s.api.tls_cert = s.api.tls_cert.as_deref().map(|r| relative_to(path, r));
        s.api.tls_key = s.api.tls_key.as_deref().map(|r| relative_to(path, r));
        s.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.operations().map(|_| ())?;
        if self.kafka.topic == self.kafka.dlq_topic {
            return Err("kafka.topic and kafka.dlq_topic must differ".into());
        }
        if self.store.records_path() == self.store.path {
            return Err("store.records must not be the store itself".into());
        }
        let a = &self.api;
        let limits =
            [a.max_connections, a.max_streams, a.max_streams_per_token, a.max_asof, a.header_timeout_ms as usize];
        if limits.contains(&0) {
            return Err(
                "api.max_connections, max_streams, max_streams_per_token, max_asof and header_timeout_ms must be at least 1"
                    .into(),
            );
        }
        if a.tls_cert.is_some() != a.tls_key.is_some() {
            return Err("api.tls_cert and api.tls_key go together".into());
        }
        if self.kafka.partitions < 1 || self.rollup.batch_size == 0 {
            return Err("kafka.partitions and rollup.batch_size must be at least 1".into());
        }
        Ok(())
    }

    /// The operations as the domain checks them (R6).
    pub fn operations(&self) -> Result<Operations, String> {
        let mut seen = BTreeSet::new();
        let mut ops = Vec::new();
        for o in &self.operations {
            let at = |m: String| format!("operation {:?}: {m}", o.id);
            check_operation(&o.id).map_err(|e| at(e.to_string()))?;
            if !seen.insert(o.id.clone()) {
                return Err(at("is listed twice".into()));
            }
            let starts = parse_instant("starts", &o.starts).map_err(at)?;
            let ends = parse_instant("ends", &o.ends).map_err(at)?;
            if starts >= ends {
                return Err(at(format!("starts {} is not before ends {}", o.starts, o.ends)));
            }
            let forces = match &o.forces {
                None => None,
                Some(list) => {
                    for f in list {
                        check_force(f).map_err(|e| at(e.to_string()))?;
                    }
                    Some(list.iter().cloned().collect())
                }
            };
            let utc_offset_ms = chrono::DateTime::parse_from_rfc3339(&o.starts)
                .map(|t| i64::from(t.offset().local_minus_utc()) * 1000)
                .unwrap_or(0);
            ops.push(Operation { id: o.id.clone(), name: o.name.clone(), starts, ends, forces, utc_offset_ms });
        }
        Ok(Operations::new(ops))
    }
}

impl AgentSettings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut s: AgentSettings = load(path)?;
        s.state_dir = relative_to(path, &s.state_dir);
        s.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        check_force(&self.force).map_err(|e| e.to_string())?;
        if self.spool_limit == 0 {
            return Err("spool_limit must be at least 1".into());
        }
        let mut ids = BTreeSet::new();
        for (alias, op) in &self.operations {
            check_operation(&op.id).map_err(|e| format!("operations.{alias}: {e}"))?;
            if !ids.insert(&op.id) {
                return Err(format!("operation {} is configured twice", op.id));
            }
            if op.secret.as_ref().is_none_or(|s| s.expose().is_empty()) {
                return Err(format!(
                    "operations.{alias}.secret is not set: pass it as JOINTOPS__OPERATIONS__{}__SECRET",
                    alias.to_uppercase()
                ));
            }
        }
        Ok(())
    }

    /// The secret of an operation code, if this agent takes part in it.
    pub fn secret_for(&self, operation: &str) -> Option<&Secret> {
        self.operations.values().find(|o| o.id == operation).and_then(|o| o.secret.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn hub_config_loads_with_defaults_and_relative_store_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            r#"[kafka]
            [[operations]]
            id = "OP-1"
            starts = "2023-10-09T00:00:00+01:00"
            ends = "2023-10-16T00:00:00+01:00"
            forces = ["MPS", "KENT"]"#,
        );
        let s = HubSettings::load(&p).unwrap();
        assert_eq!(s.kafka.topic, "jointops.outcomes");
        assert_eq!(s.store.path, dir.path().join("data/jointops.sqlite"));
        assert_eq!(s.operations().unwrap().get("OP-1").unwrap().starts, 1_696_806_000_000);
    }

    #[test]
    fn unknown_keys_and_bad_windows_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "[kafka]\ntopics = \"x\"\n");
        assert!(HubSettings::load(&p).unwrap_err().to_string().contains("topics"));
        let p = write(
            dir.path(),
            "[kafka]\n[[operations]]\nid = \"A\"\nstarts = \"2023-10-16T00:00:00Z\"\nends = \"2023-10-09T00:00:00Z\"\n",
        );
        let e = HubSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("is not before"), "{e}");
    }

    #[test]
    fn records_beside_the_store_and_api_limits_and_tls_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "[kafka]
[store]
path = \"d/hub.sqlite\"
[api]
tls_cert = \"c.pem\"
tls_key = \"k.pem\"
",
        );
        let s = HubSettings::load(&p).unwrap();
        assert_eq!(s.store.records_path(), dir.path().join("d/hub.sqlite.records"));
        assert_eq!(s.api.tls_key, Some(dir.path().join("k.pem")));
        for bad in
            ["[api]\ntls_cert = \"c.pem\"\n", "[api]\nmax_streams = 0\n", "[store]\npath = \"a\"\nrecords = \"a\"\n"]
        {
            let p = write(dir.path(), &format!("[kafka]\n{bad}"));
            assert!(HubSettings::load(&p).is_err(), "{bad}");
        }
    }

    #[test]
    fn agent_secret_is_required_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "force = \"MPS\"\nstate_dir = \"s\"\n[kafka]\n[operations.op_a]\nid = \"OP-A\"\n");
        let e = AgentSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("JOINTOPS__OPERATIONS__OP_A__SECRET"), "{e}");
        let p = write(
            dir.path(),
            "force = \"MPS\"\nstate_dir = \"s\"\n[kafka]\n[operations.op_a]\nid = \"OP-A\"\nsecret = \"hunter2\"\n",
        );
        let s = AgentSettings::load(&p).unwrap();
        assert_eq!(s.secret_for("OP-A").unwrap().expose(), "hunter2");
        assert_eq!(s.spool_limit, 1_000_000);
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
