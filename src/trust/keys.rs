//! A force's private signing key in a file only its owner may read:
//! generating it (`jointops keys generate`), writing it 0600, and loading
//! it for the agent, which refuses a file others could read.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::SigningKey;
use serde::Deserialize;

use super::check_key_id;
use crate::domain::event::check_force;

/// A signing key with the force and id the hub knows it by.
pub struct LoadedKey {
    pub force: String,
    pub id: String,
    pub key: SigningKey,
}

/// Never prints the key.
impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey").field("force", &self.force).field("id", &self.id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read signing key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("signing key {path} may be read by others (mode {mode:03o}): run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("signing key {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write signing key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Bad(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    force: String,
    id: String,
    /// Standard base64 of the 32-byte Ed25519 seed.
    private_key: String,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A fresh key from the operating system's random source.
pub fn generate(force: &str, id: &str) -> Result<LoadedKey, KeyFileError> {
    check_force(force).map_err(|e| KeyFileError::Bad(e.to_string()))?;
    check_key_id(id).map_err(|e| KeyFileError::Bad(e.to_string()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random source");
    Ok(LoadedKey { force: force.into(), id: id.into(), key: SigningKey::from_bytes(&seed) })
}

/// Writes a new key file, mode 0600 from its creation; never overwrites one
/// (a key replaced by mistake cannot be got back).
pub fn write_signing_key(path: &Path, key: &LoadedKey) -> Result<(), KeyFileError> {
    let err = |source| KeyFileError::Write { path: path.into(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    let text = format!(
        "# jointops signing key (contract §7). Private: only its owner may read it.\n\
         force = \"{}\"\nid = \"{}\"\nprivate_key = \"{}\"\n",
        key.force,
        key.id,
        b64().encode(key.key.as_bytes())
    );
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(err)
}

/// Loads a key file written by [`write_signing_key`]; refuses one that the
/// group or others may read.
pub fn load_signing_key(path: &Path) -> Result<LoadedKey, KeyFileError> {
    let read = |source| KeyFileError::Read { path: path.into(), source };
    let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed { path: path.into(), mode });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse_signing_key(&text, path)
}

/// A key file's text, from a file or an environment variable (`source`
/// names it in errors, which never quote the text).
pub fn parse_signing_key(text: &str, source: &Path) -> Result<LoadedKey, KeyFileError> {
    let invalid = |message: String| KeyFileError::Invalid { path: source.into(), message };
    // The parser's message could quote the key's line: say only where.
    let file: KeyFile = toml::from_str(text).map_err(|e| {
        invalid(format!(
            "not a key file (force, id, private_key){}",
            e.span().map_or(String::new(), |s| format!(" near byte {}", s.start))
        ))
    })?;
    check_force(&file.force).map_err(|e| invalid(e.to_string()))?;
    check_key_id(&file.id).map_err(|e| invalid(e.to_string()))?;
    let seed: [u8; 32] = b64()
        .decode(file.private_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("private_key is not standard base64 of 32 bytes".into()))?;
    Ok(LoadedKey { force: file.force, id: file.id, key: SigningKey::from_bytes(&seed) })
}

/// The hub's `[[trust.keys]]` entry for a key (public half only).
pub fn keyring_entry(key: &LoadedKey) -> String {
    format!(
        "[[trust.keys]]\nforce = \"{}\"\nid = \"{}\"\npublic_key = \"{}\"\n",
        key.force,
        key.id,
        b64().encode(key.key.verifying_key().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_written_0600_and_loads_back() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("mps.key");
        let key = generate("MPS", "MPS-2026-01").unwrap();
        write_signing_key(&path, &key).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = load_signing_key(&path).unwrap();
        assert_eq!((back.force.as_str(), back.id.as_str()), ("MPS", "MPS-2026-01"));
        assert_eq!(back.key.as_bytes(), key.key.as_bytes());
        assert!(write_signing_key(&path, &key).is_err(), "never overwritten");
        let entry = keyring_entry(&key);
        assert!(entry.contains(&b64().encode(key.key.verifying_key().as_bytes())), "{entry}");
        assert!(!entry.contains(&b64().encode(key.key.as_bytes())), "no private half");
        assert!(!format!("{back:?}").contains(&b64().encode(key.key.as_bytes())));
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k");
        write_signing_key(&path, &generate("KENT", "K-1").unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_signing_key(&path).unwrap_err();
        assert!(matches!(e, KeyFileError::Exposed { mode: 0o640, .. }), "{e}");
    }

    #[test]
    fn bad_names_and_bad_files_are_refused_without_quoting_the_key() {
        assert!(generate("kent", "K").is_err());
        assert!(generate("KENT", "no spaces").is_err());
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("k");
        std::fs::write(&path, "force = \"KENT\"\nid = \"K\"\nprivate_key = \"c2VjcmV0\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = load_signing_key(&path).unwrap_err().to_string();
        assert!(e.contains("32 bytes") && !e.contains("c2VjcmV0"), "{e}");
    }
}
