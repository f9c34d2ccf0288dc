//! The `Settings` trees of the hub (`hub.rs`) and the agent (`agent.rs`): loaded from a TOML file
//! layered with `JOINTOPS__…` environment variables, validated once.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::Millis;

mod agent;
mod hub;
mod properties;

pub use agent::*;
pub use hub::*;
pub use properties::read as read_properties;

/// `[metrics]`: where the process serves Prometheus metrics on `/metrics`
/// (the rollup, `agent watch`; `serve` also has them on its API listener).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// `host:port`; none by default.
    #[serde(default)]
    pub listen: Option<String>,
}

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
    #[error("kafka.properties {path}: {message}")]
    Properties { path: PathBuf, message: String },
    #[error(
        "kafka.properties {path} holds a secret ({key}) and others may read it (mode {mode:03o}): run `chmod 600 {path}`"
    )]
    ExposedProperties { path: PathBuf, key: String, mode: u32 },
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

#[cfg(test)]
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
        assert!(s.trust.require_signatures, "signatures are required unless the config says otherwise");
    }

    /// The `[trust]` names third parties configure hubs with (contract §7).
    #[test]
    fn trust_keys_load_under_the_contracts_names_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="; // §8's public key
        let text = format!(
            "[kafka]\n[trust]\nrequire_signatures = false\n[[trust.keys]]\nforce = \"MPS\"\nid = \"MPS-2026-01\"\n\
             public_key = \"{key}\"\nnot_before = \"2026-01-01T00:00:00Z\"\nnot_after = \"2027-01-01T00:00:00Z\"\n\
             [[trust.keys]]\nforce = \"MPS\"\nid = \"MPS-2025-01\"\npublic_key = \"{key}\"\nrevoked = true\n"
        );
        let s = HubSettings::load(&write(dir.path(), &text)).unwrap();
        assert!(!s.trust.require_signatures);
        let ring = s.keyring().unwrap();
        assert_eq!(ring.len(), 2);
        let bad = [
            text.replace("revoked = true", "revokd = true"),
            text.replace("2027-01-01T00:00:00Z", "next year"),
            text.replace("MPS-2025-01", "MPS-2026-01"),
            text.replace(&format!("\"{key}\"\nrevoked"), "\"AAAA\"\nrevoked"),
        ];
        for t in bad {
            assert!(HubSettings::load(&write(dir.path(), &t)).is_err(), "{t}");
        }
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
