//! Who may speak for a force (contract §7): the bytes an event's Ed25519
//! signature covers, its headers, the hub's keyring and the check of one
//! record against it, and the forces' private keys. Pure but for reading and
//! writing key files; no Kafka.
//!
//! The agent signs with [`sign`] and sends [`KEY_ID_HEADER`] and
//! [`SIGNATURE_HEADER`]; the hub checks with [`Keyring::verify`] before it
//! decodes the value and [`Keyring::bind`] once it has.

mod bench;
mod keyring;
mod keys;

pub use bench::{measure, Cost};
pub use keyring::{KeyEntry, Keyring, KeyringError, Refusal, SignatureHeaders, Verified};
pub use keys::{
    generate, keyring_entry, load_signing_key, parse_signing_key, write_signing_key, KeyFileError, LoadedKey,
};

use ed25519_dalek::{Signer, SigningKey};

/// Header carrying the UTF-8 id of the signing key.
pub const KEY_ID_HEADER: &str = "jointops-key-id";
/// Header carrying the 64 raw signature bytes.
pub const SIGNATURE_HEADER: &str = "jointops-signature";
/// What the signed bytes start with, before a zero byte.
pub const DOMAIN: &[u8] = b"jointops-sig-v1";

/// The bytes a signature covers: the domain, a zero byte, the record key's
/// length (4 bytes, big-endian), the key, then the value as on the wire.
/// The length makes the key/value boundary unambiguous.
pub fn signed_bytes(record_key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 5 + record_key.len() + value.len());
    out.extend_from_slice(DOMAIN);
    out.push(0);
    out.extend_from_slice(&(record_key.len() as u32).to_be_bytes());
    out.extend_from_slice(record_key);
    out.extend_from_slice(value);
    out
}

/// The `jointops-signature` header's value for a record.
pub fn sign(key: &SigningKey, record_key: &[u8], value: &[u8]) -> [u8; 64] {
    key.sign(&signed_bytes(record_key, value)).to_bytes()
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("key id {0:?} is not 1 to 64 of A-Z a-z 0-9 . _ : -")]
pub struct BadKeyId(pub String);

/// A key id as the contract allows it: `[A-Za-z0-9._:-]{1,64}`.
pub fn check_key_id(id: &str) -> Result<(), BadKeyId> {
    let ok = (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BadKeyId(id.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Contract §8: seed 00..1f, key id MPS-2026-01.
    pub(crate) fn vector_key() -> SigningKey {
        SigningKey::from_bytes(&std::array::from_fn(|i| i as u8))
    }
    const KEY: &[u8] = b"CLIW-2023-10/MPS/MPS-AR-0001";
    const VALUE: &str = "c301ef9df2252ebbaba402";

    #[test]
    fn the_contracts_signature_vector_holds() {
        let key = vector_key();
        assert_eq!(
            hex::encode(key.verifying_key().as_bytes()),
            "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
        );
        let value = hex::decode(VALUE).unwrap();
        assert_eq!(
            hex::encode(signed_bytes(KEY, &value)),
            "6a6f696e746f70732d7369672d7631000000001c434c49572d323032332d31302f4d50532f4d50532d41522d30303031c301ef9df2252ebbaba402"
        );
        assert_eq!(
            hex::encode(sign(&key, KEY, &value)),
            "3009005b77bf2fd12b6ea32018b90c3a6940403ef28adf3c3696d712cd13f80920e7efcf1978229fd750a5a65d3b03f2d178144b0e80ca22f5934b612cc3bd06"
        );
        check_key_id("MPS-2026-01").unwrap();
    }

    #[test]
    fn key_ids_follow_the_contract() {
        for good in ["a", "MPS-2026-01", "x.y_z:1-2", &"k".repeat(64)] {
            assert_eq!(check_key_id(good), Ok(()), "{good}");
        }
        for bad in ["", "has space", "é", "a/b", &"k".repeat(65), "nul\0"] {
            assert!(check_key_id(bad).is_err(), "{bad:?}");
        }
    }
}
