//! `kafka.properties`: a librdkafka properties file (`key=value` lines, as
//! `kcat -F` reads them) that both configs may point at, so that a broker's
//! credentials live in one private file beside the configs that use them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{is_secret_setting, ConfigError};

/// The librdkafka setting a properties file names the brokers with.
const BOOTSTRAP: &str = "bootstrap.servers";

/// Reads `path`: every setting but `bootstrap.servers`, and that apart.
/// Refused when it holds a secret and group or others may read it.
pub fn read(path: &Path) -> Result<(BTreeMap<String, String>, Option<String>), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let invalid = |message: String| ConfigError::Properties { path: path.into(), message };
    let text = std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
    let mut settings = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(invalid(format!("line {}: expected key=value", n + 1)));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(invalid(format!("line {}: no key before '='", n + 1)));
        }
        settings.insert(key.to_string(), value.trim().to_string());
    }
    if let Some(key) = settings.keys().find(|k| is_secret_setting(k)) {
        let mode = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ConfigError::ExposedProperties { path: path.into(), key: key.clone(), mode });
        }
    }
    let bootstrap = settings.remove(BOOTSTRAP);
    Ok((settings, bootstrap))
}

/// Folds the file at `properties` (relative to `config`'s folder) into a
/// `[kafka]` section: its settings under the section's own
/// `[kafka.librdkafka]` entries, which win; its `bootstrap.servers` when the
/// section sets no `bootstrap`; and the default address when neither does.
pub fn apply(
    config: &Path,
    properties: &mut Option<PathBuf>,
    bootstrap: &mut String,
    librdkafka: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    if let Some(p) = properties.as_mut() {
        *p = super::relative_to(config, p);
        let (mut settings, from_file) = read(p)?;
        if bootstrap.is_empty() {
            *bootstrap = from_file.unwrap_or_default();
        }
        settings.append(librdkafka);
        *librdkafka = settings;
    }
    if bootstrap.is_empty() {
        *bootstrap = super::default_bootstrap();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::{AgentSettings, HubSettings};

    fn write(path: &std::path::Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    const HUB_PROPS: &str = "# the hub\nbootstrap.servers=127.0.0.1:9093\nsecurity.protocol=SASL_SSL\n\
        sasl.mechanism=SCRAM-SHA-512\nsasl.username=hub\nsasl.password=s3cret\nssl.ca.location=/x/ca.pem\n";

    #[test]
    fn a_properties_file_supplies_the_bootstrap_and_settings_and_explicit_entries_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        write(&dir.path().join("secrets/hub.properties"), HUB_PROPS, 0o600);
        let cfg = dir.path().join("hub.toml");
        let section = "[kafka]\nproperties = \"secrets/hub.properties\"\n";
        write(
            &cfg,
            &format!("{section}[kafka.librdkafka]\n\"client.id\" = \"h\"\n\"sasl.username\" = \"other\"\n"),
            0o644,
        );
        let s = HubSettings::load(&cfg).unwrap();
        assert_eq!(s.kafka.bootstrap, "127.0.0.1:9093");
        assert_eq!(s.kafka.properties, Some(dir.path().join("secrets/hub.properties")));
        let raw = &s.kafka.librdkafka;
        assert_eq!(raw["security.protocol"], "SASL_SSL");
        assert_eq!(raw["sasl.username"], "other", "[kafka.librdkafka] wins over the file");
        assert_eq!(raw["client.id"], "h");
        assert!(!raw.contains_key("bootstrap.servers"), "the bootstrap is kafka.bootstrap alone");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret") && shown.contains("hub.properties"), "{shown}");

        // An explicit bootstrap wins over the file's, for the agent too.
        let agent = dir.path().join("agent.toml");
        write(
            &agent,
            "force = \"KENT\"\nstate_dir = \"s\"\n[kafka]\nbootstrap = \"b:1\"\nproperties = \"secrets/hub.properties\"\n",
            0o644,
        );
        let a = AgentSettings::load(&agent).unwrap();
        assert_eq!((a.kafka.bootstrap.as_str(), a.kafka.librdkafka["sasl.password"].as_str()), ("b:1", "s3cret"));
        // Neither: the default.
        write(&cfg, "[kafka]\n", 0o644);
        assert_eq!(HubSettings::load(&cfg).unwrap().kafka.bootstrap, "127.0.0.1:9092");
    }

    #[test]
    fn a_properties_file_others_may_read_or_that_is_malformed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let props = dir.path().join("hub.properties");
        let cfg = dir.path().join("hub.toml");
        write(&cfg, "[kafka]\nproperties = \"hub.properties\"\n", 0o644);
        write(&props, HUB_PROPS, 0o640);
        let e = HubSettings::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("hub.properties") && e.contains("sasl.password") && e.contains("mode 640"), "{e}");
        assert!(e.contains("chmod 600") && !e.contains("s3cret"), "{e}");
        write(&props, "security.protocol=SSL\n", 0o644);
        assert!(HubSettings::load(&cfg).is_ok(), "no secret in it: its mode does not matter");
        write(&props, "security.protocol=SSL\nsasl.password\n", 0o600);
        let e = HubSettings::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("line 2: expected key=value"), "{e}");
        std::fs::remove_file(&props).unwrap();
        let e = HubSettings::load(&cfg).unwrap_err().to_string();
        assert!(e.contains("hub.properties") && e.contains("cannot read it"), "{e}");
    }
}
