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
    /// `detail` is the config crate's message with what it lacks: the line
    /// of an unknown key and the nearest known one.
    #[error("cannot load {path}: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path} holds a secret ({key}) and others may read it (mode {mode:03o}): run `chmod 600 {path}`, \
         or pass the secret in the environment (JOINTOPS__…) instead"
    )]
    Exposed { path: PathBuf, key: String, mode: u32 },
}

/// Whether a raw librdkafka setting holds a secret (`sasl.password`,
/// `ssl.key.password`, `ssl.key.pem`, `sasl.oauthbearer.client.secret`, …);
/// file locations are not secrets.
pub fn is_secret_setting(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    !k.ends_with(".location")
        && ["password", "secret", "jaas", "key.pem", "token", "credential"].iter().any(|w| k.contains(w))
}

/// The raw librdkafka map as settings print it: secret values redacted.
struct RedactedMap<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for RedactedMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.0.iter().map(|(k, v)| (k, if is_secret_setting(k) { "[redacted]" } else { v.as_str() }));
        f.debug_map().entries(shown).finish()
    }
}

/// The first secret a config file itself holds, by its dotted name: the
/// agent's operation secrets and secret librdkafka settings.
fn secret_in(file: &toml::Table) -> Option<String> {
    let table = |v: Option<&toml::Value>| v.and_then(toml::Value::as_table).cloned().unwrap_or_default();
    let raw = table(table(file.get("kafka")).get("librdkafka"));
    if let Some(k) = raw.keys().find(|k| is_secret_setting(k)) {
        return Some(format!("kafka.librdkafka.\"{k}\""));
    }
    let operations = table(file.get("operations"));
    operations.iter().find_map(|(alias, op)| {
        op.as_table().filter(|t| t.contains_key("secret")).map(|_| format!("operations.{alias}.secret"))
    })
}

/// Refuses a config file that holds a secret and that others may read.
fn check_private(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    // Unreadable or malformed files are the loader's to report.
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let Ok(file) = text.parse::<toml::Table>() else { return Ok(()) };
    let (Some(key), Ok(meta)) = (secret_in(&file), std::fs::metadata(path)) else { return Ok(()) };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Exposed { path: path.into(), key, mode });
    }
    Ok(())
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

#[derive(Clone, Deserialize)]
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
    #[serde(default)]
    pub watch: WatchSettings,
    /// Operations whose new pseudonymisation secret is accepted although the
    /// ledger published with another (`--accept-secret-change`): only ever
    /// from the command line, so that no file keeps accepting changes.
    #[serde(skip)]
    pub accept_secret_change: BTreeSet<String>,
    #[serde(default)]
    pub exports: ExportSettings,
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
    #[serde(default = "default_bootstrap")]
    pub bootstrap: String,
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
        AgentOperation { id: id.into(), secret: Some(secret), starts: None, ends: None, forces: None }
    }
}

/// An optional RFC 3339 instant, read once into milliseconds.
fn rfc3339<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
    let text = String::deserialize(d)?;
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|e| serde::de::Error::custom(format!("{text:?} is not RFC 3339 ({e})")))
}

impl fmt::Debug for HubKafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubKafka")
            .field("bootstrap", &self.bootstrap)
            .field("topic", &self.topic)
            .field("dlq_topic", &self.dlq_topic)
            .field("group", &self.group)
            .field("partitions", &self.partitions)
            .field("librdkafka", &RedactedMap(&self.librdkafka))
            .finish()
    }
}

impl fmt::Debug for AgentKafka {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKafka")
            .field("bootstrap", &self.bootstrap)
            .field("topic", &self.topic)
            .field("give_up_after_s", &self.give_up_after_s)
            .field("librdkafka", &RedactedMap(&self.librdkafka))
            .finish()
    }
}

fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    check_private(path)?;
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("JOINTOPS").prefix_separator("__").separator("__").try_parsing(false),
        )
        .build()
        .map_err(|e| load_error(path, &e))?;
    built.try_deserialize().map_err(|e| load_error(path, &e))
}

fn load_error(path: &Path, e: &config::ConfigError) -> ConfigError {
    let text = e.to_string();
    // The config crate appends " in <path>" to syntax errors; the path leads ours.
    let detail = match text.rfind("\n in ") {
        Some(at) => text[..at].trim_end().to_string(),
        None => text.clone(),
    };
    ConfigError::Load { path: path.into(), detail: explain_unknown_key(path, &detail).unwrap_or(detail) }
}

/// "unknown field `bootstrp`, expected one of `bootstrap`, …" → the line it
/// is on and the nearest known key.
fn explain_unknown_key(path: &Path, detail: &str) -> Option<String> {
    let rest = detail.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let nearest = expected
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min()
        .map(|(_, k)| k);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text.lines().position(|l| {
        let l = l.trim_start().trim_start_matches('"');
        l.strip_prefix(unknown).is_some_and(|r| r.trim_start().trim_start_matches('"').trim_start().starts_with('='))
    });
    let section = detail.rsplit_once(" for key `").map(|(_, k)| k.trim_end_matches('`'));
    let mut out = format!("unknown key `{unknown}`");
    if let Some(section) = section {
        out.push_str(&format!(" in [{section}]"));
    }
    if let Some(n) = line {
        out.push_str(&format!(" at line {}", n + 1));
    }
    match nearest {
        Some(k) => out.push_str(&format!(": did you mean `{k}`?")),
        None => out.push_str(&format!(" (known keys: {})", expected.join(", "))),
    }
    Some(out)
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

/// A bootstrap list as librdkafka takes it: `host:port` entries separated
/// by commas (an optional `PLAINTEXT://`-style scheme before each). Checked
/// at start, since librdkafka takes a bad address without a word and then
/// retries it for as long as a delivery may take.
pub fn check_bootstrap(list: &str) -> Result<(), String> {
    if list.trim().is_empty() {
        return Err("is empty (expected host:port, e.g. 127.0.0.1:9092)".into());
    }
    for entry in list.split(',').map(str::trim) {
        let bare = entry.split_once("://").map_or(entry, |(_, rest)| rest);
        let Some((host, port)) = bare.rsplit_once(':') else {
            return Err(format!("{entry:?} has no port (expected host:port, e.g. 127.0.0.1:9092)"));
        };
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(format!("{entry:?} has no valid host (expected host:port, e.g. 127.0.0.1:9092)"));
        }
        match port.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => {}
            _ => return Err(format!("{entry:?}: port {port:?} is not a number in 1..=65535")),
        }
    }
    Ok(())
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

#[cfg(test)]
#[path = "config_agent_tests.rs"]
mod agent_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn private(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Regression: a config file holding a secret was read whatever its
    /// permissions, and raw librdkafka secrets printed with the settings.
    #[test]
    fn a_config_holding_a_secret_that_others_may_read_is_refused_and_secrets_never_print() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let agent =
            "force = \"MPS\"\nstate_dir = \"s\"\n[kafka]\n[operations.op_a]\nid = \"OP-A\"\nsecret = \"hunter2\"\n";
        let p = write(dir.path(), agent);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = AgentSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("c.toml") && e.contains("operations.op_a.secret"), "{e}");
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");

        let hub = "[kafka]\n[kafka.librdkafka]\n\"sasl.username\" = \"hub\"\n\"sasl.password\" = \"s3cret\"\n\"ssl.ca.location\" = \"ca.pem\"\n";
        let p = write(dir.path(), hub);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = HubSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("kafka.librdkafka.\"sasl.password\""), "{e}");
        private(&p);
        let s = HubSettings::load(&p).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret") && shown.contains("[redacted]"), "{shown}");
        assert!(shown.contains("ca.pem") && shown.contains("\"hub\""), "{shown}");
        // Without a secret in the file, its mode does not matter.
        let p = write(dir.path(), "[kafka]\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(HubSettings::load(&p).is_ok());
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
        let e = HubSettings::load(&p).unwrap_err().to_string();
        // Regression: the config crate's message was printed twice, with no
        // line and no suggestion.
        assert!(e.ends_with("unknown key `topics` in [kafka] at line 2: did you mean `topic`?"), "{e}");
        assert_eq!(e.matches("topics").count(), 1, "{e}");
        let p = write(dir.path(), "[kafka]\nbootstrap = \n");
        let e = HubSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.matches("TOML parse error").count() == 1, "{e}");
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
        private(&p);
        let s = AgentSettings::load(&p).unwrap();
        assert_eq!(s.secret_for("OP-A").unwrap().expose(), "hunter2");
        assert_eq!(s.spool_limit, 1_000_000);
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn agent_bootstrap_and_export_settings_are_checked_at_start() {
        for good in ["127.0.0.1:9092", "kafka-1:9092, kafka-2:9093", "[::1]:9092", "SSL://broker.example:9093"] {
            assert_eq!(check_bootstrap(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("", "is empty"),
            ("127.0.0.1", "has no port"),
            ("127.0.0.1:0", "port \"0\" is not a number in 1..=65535"),
            ("localhost:99999", "port \"99999\""),
            ("localhost:http", "port \"http\""),
            (":9092", "has no valid host"),
            ("a:1,,b:2", "has no port"),
        ] {
            let e = check_bootstrap(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let base = "force = \"MPS\"\nstate_dir = \"s\"\n";
        let p = write(dir.path(), &format!("{base}[kafka]\nbootstrap = \"127.0.0.1:909200\"\n"));
        let e = AgentSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("kafka.bootstrap: \"127.0.0.1:909200\": port"), "{e}");
        let p =
            write(dir.path(), &format!("{base}[kafka]\n[exports]\nstrict_columns = true\ncsv_delimiter = \"tab\"\n"));
        let s = AgentSettings::load(&p).unwrap();
        assert!(s.exports.strict_columns && s.exports.csv_delimiter == CsvDelimiter::Byte(b'\t'));
        assert_eq!(s.kafka.give_up_after_s, 60);
        let p = write(dir.path(), &format!("{base}[kafka]\n[exports]\ncsv_delimiter = \"|\"\n"));
        let e = AgentSettings::load(&p).unwrap_err().to_string();
        assert!(e.contains("is not one of"), "{e}");
    }
}
