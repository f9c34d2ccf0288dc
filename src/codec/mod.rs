//! Avro single-object encoding of outcome events (contract §3): `C3 01`, the
//! writer schema's 8-byte little-endian CRC-64-AVRO fingerprint, the datum.
//! Every schema version in `schemas/` is compiled in; the current one is read
//! by a fast hand-written codec, older ones through apache-avro's resolution.

pub mod binary;
pub mod canonical;
mod resolve;

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use crate::domain::{OutcomeEvent, Reason};

/// The schema files, oldest first. Add a version here and keep the old ones:
/// agents in the field still write them.
pub const SCHEMA_FILES: &[(&str, &str)] =
    &[("outcome-event.v1.avsc", include_str!("../../schemas/outcome-event.v1.avsc"))];

/// The version the hand-written codec in [`binary`] implements.
const FAST_VERSION: u32 = 1;

pub const MAGIC: [u8; 2] = [0xC3, 0x01];
pub const HEADER_LEN: usize = 10;

/// Largest allocation apache-avro may make for one datum: a Kafka record is
/// at most about a megabyte, so a larger length on the wire is a lie.
const MAX_AVRO_ALLOCATION: usize = 1 << 20;

/// Why a value could not be decoded; each maps to a dead-letter reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("value is empty")]
    Empty,
    #[error("value is {0} bytes, shorter than the 10-byte single-object header")]
    Short(usize),
    #[error("value starts {0:02X} {1:02X}, not the single-object marker C3 01")]
    BadMagic(u8, u8),
    #[error("writer schema fingerprint {0:016x} is not a known version")]
    UnknownFingerprint(u64),
    #[error("datum does not match schema v{version}: {detail}")]
    Datum { version: u32, detail: String },
    /// Well-formed so far, but a length no valid event can have.
    #[error("{0}")]
    Oversized(String),
}

impl DecodeError {
    pub fn reason(&self) -> Reason {
        match self {
            DecodeError::UnknownFingerprint(_) => Reason::UnknownSchema,
            DecodeError::Oversized(_) => Reason::Invalid,
            _ => Reason::Undecodable,
        }
    }
}

/// One schema version from `schemas/`.
pub struct SchemaVersion {
    pub version: u32,
    pub file: String,
    pub json: String,
    pub canonical: String,
    pub fingerprint: u64,
    pub schema: Schema,
}

/// All known writer schemas, by fingerprint.
pub struct Registry {
    versions: Vec<SchemaVersion>,
    by_fingerprint: HashMap<u64, usize>,
    fast_fingerprint: u64,
}

impl Registry {
    /// The registry of the schemas compiled into this binary.
    pub fn builtin() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(|| {
            Registry::from_files(SCHEMA_FILES.iter().map(|(f, j)| (f.to_string(), j.to_string())))
                .expect("the compiled-in schemas are checked by tests")
        })
    }

    /// Builds a registry from `(file name, JSON)` pairs, oldest first. Files
    /// are named `<anything>.v<N>.avsc`.
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Result<Registry, String> {
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        let mut versions = Vec::new();
        for (file, json) in files {
            let version = version_of(&file).ok_or_else(|| format!("{file}: name is not <name>.v<N>.avsc"))?;
            let schema = Schema::parse_str(&json).map_err(|e| format!("{file}: {e}"))?;
            let canonical = canonical::parsing_canonical_form(&json).map_err(|e| format!("{file}: {e}"))?;
            let fingerprint = canonical::rabin(canonical.as_bytes());
            versions.push(SchemaVersion { version, file, json, canonical, fingerprint, schema });
        }
        versions.sort_by_key(|v| v.version);
        if versions.is_empty() {
            return Err("no schema versions".into());
        }
        let by_fingerprint = versions.iter().enumerate().map(|(i, v)| (v.fingerprint, i)).collect();
        let fast_fingerprint = versions.iter().find(|v| v.version == FAST_VERSION).map(|v| v.fingerprint).unwrap_or(0);
        Ok(Registry { versions, by_fingerprint, fast_fingerprint })
    }

    pub fn versions(&self) -> &[SchemaVersion] {
        &self.versions
    }

    pub fn current(&self) -> &SchemaVersion {
        self.versions.last().expect("never empty")
    }

    /// Full transitive backward compatibility: every version can read every
    /// earlier one. Returns one line per failing pair.
    pub fn check_compatibility(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (i, reader) in self.versions.iter().enumerate() {
            for writer in &self.versions[..i] {
                if let Err(e) = SchemaCompatibility::can_read(&writer.schema, &reader.schema) {
                    problems.push(format!("v{} cannot read v{}: {e}", reader.version, writer.version));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Encodes with the current schema, single-object framed.
    pub fn encode(&self, event: &OutcomeEvent) -> Vec<u8> {
        debug_assert_eq!(self.current().version, FAST_VERSION, "the fast codec writes the current version");
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.fast_fingerprint.to_le_bytes());
        binary::encode(event, &mut out);
        out
    }

    /// Decodes a single-object encoded value written with any known version.
    pub fn decode(&self, value: &[u8]) -> Result<OutcomeEvent, DecodeError> {
        if value.is_empty() {
            return Err(DecodeError::Empty);
        }
        // The marker first: "not single-object encoded" says more than "short".
        if value.len() >= 2 && value[..2] != MAGIC {
            return Err(DecodeError::BadMagic(value[0], value[1]));
        }
        if value.len() < HEADER_LEN {
            return Err(DecodeError::Short(value.len()));
        }
        let fingerprint = u64::from_le_bytes(value[2..HEADER_LEN].try_into().expect("8 bytes"));
        let datum = &value[HEADER_LEN..];
        if fingerprint == self.fast_fingerprint {
            return binary::decode(datum).map_err(|e| match e {
                binary::DatumError::TooLong { .. } => DecodeError::Oversized(e.to_string()),
                _ => DecodeError::Datum { version: FAST_VERSION, detail: e.to_string() },
            });
        }
        let &index = self.by_fingerprint.get(&fingerprint).ok_or(DecodeError::UnknownFingerprint(fingerprint))?;
        let writer = &self.versions[index];
        resolve::decode(&writer.schema, &self.current().schema, datum)
            .map_err(|detail| DecodeError::Datum { version: writer.version, detail })
    }
}

fn version_of(file: &str) -> Option<u32> {
    let stem = file.strip_suffix(".avsc")?;
    let (_, v) = stem.rsplit_once(".v")?;
    v.parse().ok()
}

#[cfg(test)]
mod tests;
