//! The hub's settings: Kafka, the store, the rollup, the API, and the
//! operations it counts (R6).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{default_topic, load, parse_instant, relative_to, ConfigError, RedactedMap};
use crate::domain::event::{check_force, check_operation};
use crate::domain::{Operation, Operations};
use crate::trust::{KeyEntry, Keyring};

fn default_dlq_topic() -> String {
    "jointops.outcomes.dlq".into()
}
fn default_group() -> String {
    "jointops-rollup".into()
}
fn default_partitions() -> i32 {
    6
}
fn default_one() -> i32 {
    1
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
    #[serde(default)]
    pub trust: TrustSettings,
    #[serde(default)]
    pub metrics: super::MetricsSettings,
}

fn default_true() -> bool {
    true
}

/// `[trust]`: the forces' public keys (contract §7). Third parties configure
/// hubs by these names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    /// False only for a local trial: unsigned records then count, but
    /// signatures that are present are still checked.
    #[serde(default = "default_true")]
    pub require_signatures: bool,
    #[serde(default)]
    pub keys: Vec<TrustKeySettings>,
}

impl Default for TrustSettings {
    fn default() -> Self {
        TrustSettings { require_signatures: true, keys: Vec::new() }
    }
}

/// One `[[trust.keys]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustKeySettings {
    pub force: String,
    pub id: String,
    /// Standard base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// RFC 3339; the key signs events whose `reported_at` is in
    /// `[not_before, not_after)`.
    #[serde(default)]
    pub not_before: Option<String>,
    #[serde(default)]
    pub not_after: Option<String>,
    /// Lost or stolen: nothing it signed counts.
    #[serde(default)]
    pub revoked: bool,
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

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubKafka {
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
    #[serde(default = "default_dlq_topic")]
    pub dlq_topic: String,
    #[serde(default = "default_group")]
    pub group: String,
    /// Partitions for topics the rollup creates when they are missing.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replicas of each topic the rollup creates: 1 on one local broker;
    /// 3 in production, where a broker's loss must lose nothing.
    #[serde(default = "default_one")]
    pub replication_factor: i32,
    /// `min.insync.replicas` of the topics it creates (2 with 3 replicas).
    #[serde(default = "default_one")]
    pub min_insync_replicas: i32,
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
        self.records.clone().unwrap_or_else(|| crate::private::with_suffix(&self.path, ".records"))
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

impl fmt::Debug for HubKafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubKafka")
            .field("bootstrap", &self.bootstrap)
            .field("properties", &self.properties)
            .field("topic", &self.topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("group", &self.group)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("librdkafka", &RedactedMap(&self.librdkafka))
            .finish()
    }
}

impl HubSettings {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut s: HubSettings = load(path)?;
        let k = &mut s.kafka;
        super::properties::apply(path, &mut k.properties, &mut k.bootstrap, &mut k.librdkafka)?;
        s.store.path = relative_to(path, &s.store.path);
        s.store.records = s.store.records.as_deref().map(|r| relative_to(path, r));
        s.api.tls_cert = s.api.tls_cert.as_deref().map(|r| relative_to(path, r));
        s.api.tls_key = s.api.tls_key.as_deref().map(|r| relative_to(path, r));
        s.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.operations().map(|_| ())?;
        self.keyring().map(|_| ())?;
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

    /// The keyring as the rollup checks records against it (§7).
    pub fn keyring(&self) -> Result<Keyring, String> {
        let t = &self.trust;
        let mut entries = Vec::with_capacity(t.keys.len());
        for k in &t.keys {
            let at = |m: String| format!("trust key {:?}: {m}", k.id);
            let instant =
                |name, v: &Option<String>| v.as_deref().map(|v| parse_instant(name, v).map_err(at)).transpose();
            let (from, until) = (instant("not_before", &k.not_before)?, instant("not_after", &k.not_after)?);
            let entry = KeyEntry::parse(&k.force, &k.id, &k.public_key, from, until, k.revoked);
            entries.push(entry.map_err(|e| e.to_string())?);
        }
        Keyring::new(t.require_signatures, entries).map_err(|e| e.to_string())
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
