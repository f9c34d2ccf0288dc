//! The hub's keyring (contract §7): each force's public keys, with ids,
//! validity windows and revocations, and the two checks of a record: its
//! signature on the raw bytes (before decoding) and the key's binding to the
//! decoded event (force, window). A refusal names the check that failed,
//! never key material.

use std::collections::HashMap;

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use super::{check_key_id, signed_bytes, KEY_ID_HEADER, SIGNATURE_HEADER};
use crate::domain::event::check_force;
use crate::domain::{fmt_millis, Millis, Reason};

/// One public key of one force, as the hub's `[[trust.keys]]` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    pub force: String,
    pub id: String,
    pub public_key: VerifyingKey,
    /// `[not_before, not_after)`, compared with the event's `reported_at`.
    pub not_before: Option<Millis>,
    pub not_after: Option<Millis>,
    pub revoked: bool,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("trust key {id:?}: {message}")]
    Key { id: String, message: String },
    #[error("trust key id {0:?} is listed twice (ids are unique across forces: the header names only the id)")]
    Duplicate(String),
}

impl KeyEntry {
    /// A key from its configured text: `public_key` is standard base64 of
    /// the 32 bytes.
    pub fn parse(
        force: &str,
        id: &str,
        public_key: &str,
        not_before: Option<Millis>,
        not_after: Option<Millis>,
        revoked: bool,
    ) -> Result<KeyEntry, KeyringError> {
        let err = |message: String| KeyringError::Key { id: id.chars().take(80).collect(), message };
        check_key_id(id).map_err(|e| err(e.to_string()))?;
        check_force(force).map_err(|e| err(e.to_string()))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(public_key.trim())
            .map_err(|e| err(format!("public_key is not standard base64: {e}")))?;
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|b: Vec<u8>| err(format!("public_key is {} bytes, not 32", b.len())))?;
        let public_key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| err("public_key is not an Ed25519 public key".into()))?;
        if let (Some(from), Some(until)) = (not_before, not_after) {
            if from >= until {
                return Err(err("not_before is not before not_after".into()));
            }
        }
        Ok(KeyEntry { force: force.into(), id: id.into(), public_key, not_before, not_after, revoked })
    }
}

/// A refusal: the reason code and which check failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
}

fn bad(detail: String) -> Refusal {
    Refusal { reason: Reason::BadSignature, detail }
}

/// A record's signature that verified: the key, to bind to the event once
/// it is decoded.
#[derive(Clone, Copy, Debug)]
pub struct Verified<'a>(pub &'a KeyEntry);

/// The signature headers of one record, as found.
#[derive(Clone, Copy, Debug, Default)]
pub struct SignatureHeaders<'a> {
    pub key_id: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
    /// A header of ours appeared more than once: which one counts would be
    /// the sender's choice, so none does.
    pub repeated: bool,
}

impl<'a> SignatureHeaders<'a> {
    pub fn from_headers(headers: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> Self {
        let mut out = SignatureHeaders::default();
        for (name, value) in headers {
            let slot = match name {
                KEY_ID_HEADER => &mut out.key_id,
                SIGNATURE_HEADER => &mut out.signature,
                _ => continue,
            };
            out.repeated |= slot.is_some();
            *slot = Some(value.unwrap_or_default());
        }
        out
    }
}

#[derive(Clone, Debug, Default)]
pub struct Keyring {
    require_signatures: bool,
    keys: HashMap<String, KeyEntry>,
}

impl Keyring {
    pub fn new(require_signatures: bool, entries: impl IntoIterator<Item = KeyEntry>) -> Result<Keyring, KeyringError> {
        let mut keys = HashMap::new();
        for e in entries {
            if keys.contains_key(&e.id) {
                return Err(KeyringError::Duplicate(e.id));
            }
            keys.insert(e.id.clone(), e);
        }
        Ok(Keyring { require_signatures, keys })
    }

    pub fn require_signatures(&self) -> bool {
        self.require_signatures
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The signature check on the raw record, before anything is decoded.
    /// `Ok(None)`: unsigned, and this hub does not require signatures.
    pub fn verify(&self, h: SignatureHeaders<'_>, key: &[u8], value: &[u8]) -> Result<Option<Verified<'_>>, Refusal> {
        let (Some(id), Some(signature)) = (h.key_id, h.signature) else {
            if !self.require_signatures {
                return Ok(None);
            }
            let detail = match (h.key_id, h.signature) {
                (None, None) => format!("the record carries no {KEY_ID_HEADER} and no {SIGNATURE_HEADER} header"),
                (Some(_), _) => format!("the record carries {KEY_ID_HEADER} but no {SIGNATURE_HEADER} header"),
                _ => format!("the record carries {SIGNATURE_HEADER} but no {KEY_ID_HEADER} header"),
            };
            return Err(Refusal { reason: Reason::Unsigned, detail });
        };
        if h.repeated {
            return Err(bad(format!("the record carries {KEY_ID_HEADER} or {SIGNATURE_HEADER} more than once")));
        }
        let id = std::str::from_utf8(id)
            .ok()
            .filter(|id| check_key_id(id).is_ok())
            .ok_or_else(|| bad(format!("the {KEY_ID_HEADER} header is not a valid key id")))?;
        let entry = self.keys.get(id).ok_or_else(|| bad(format!("unknown key id {id}")))?;
        if entry.revoked {
            return Err(bad(format!("key id {id} was revoked")));
        }
        let signature: [u8; 64] = signature
            .try_into()
            .map_err(|_| bad(format!("the signature is {} bytes, not 64 (key id {id})", signature.len())))?;
        entry
            .public_key
            .verify_strict(&signed_bytes(key, value), &Signature::from_bytes(&signature))
            .map_err(|_| bad(format!("signature does not verify (key id {id})")))?;
        Ok(Some(Verified(entry)))
    }

    /// The key's binding to the decoded event: the force it names, and the
    /// key's window around the event's `reported_at`.
    pub fn bind(verified: Verified<'_>, force: &str, reported_at: Millis) -> Result<(), Refusal> {
        let k = verified.0;
        if k.force != force {
            return Err(bad(format!("key {} belongs to {}, the event names {force}", k.id, k.force)));
        }
        if let Some(from) = k.not_before.filter(|&from| reported_at < from) {
            return Err(bad(format!(
                "key {} is valid from {} (reported_at {})",
                k.id,
                fmt_millis(from),
                fmt_millis(reported_at)
            )));
        }
        if let Some(until) = k.not_after.filter(|&until| reported_at >= until) {
            return Err(bad(format!(
                "key {} is valid until {}, exclusive (reported_at {})",
                k.id,
                fmt_millis(until),
                fmt_millis(reported_at)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::sign;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn b64(k: &SigningKey) -> String {
        base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
    }

    fn ring(require: bool) -> Keyring {
        let entries = [
            KeyEntry::parse("MPS", "MPS-1", &b64(&key(1)), None, None, false).unwrap(),
            KeyEntry::parse("MPS", "MPS-2", &b64(&key(2)), Some(1000), Some(2000), false).unwrap(),
            KeyEntry::parse("KENT", "KENT-1", &b64(&key(3)), None, None, false).unwrap(),
            KeyEntry::parse("MPS", "MPS-OLD", &b64(&key(4)), None, None, true).unwrap(),
        ];
        Keyring::new(require, entries).unwrap()
    }

    fn headers<'a>(id: &'a str, sig: &'a [u8]) -> SignatureHeaders<'a> {
        SignatureHeaders { key_id: Some(id.as_bytes()), signature: Some(sig), repeated: false }
    }

    fn refused(r: Result<Option<Verified<'_>>, Refusal>) -> (Reason, String) {
        let e = r.expect_err("refused");
        (e.reason, e.detail)
    }

    #[test]
    fn a_good_signature_verifies_and_binds_to_its_force_within_its_window() {
        let ring = ring(true);
        let sig = sign(&key(2), b"k", b"v");
        let v = ring.verify(headers("MPS-2", &sig), b"k", b"v").unwrap().expect("verified");
        assert_eq!(Keyring::bind(v, "MPS", 1000), Ok(()));
        assert_eq!(Keyring::bind(v, "MPS", 1999), Ok(()));
        let early = Keyring::bind(v, "MPS", 999).unwrap_err();
        assert_eq!(early.reason, Reason::BadSignature);
        assert!(early.detail.starts_with("key MPS-2 is valid from 1970-01-01T00:00:01.000Z"), "{}", early.detail);
        let late = Keyring::bind(v, "MPS", 2000).unwrap_err();
        assert!(late.detail.contains("valid until"), "{}", late.detail);
        let other = Keyring::bind(v, "KENT", 1500).unwrap_err();
        assert_eq!(other.detail, "key MPS-2 belongs to MPS, the event names KENT");
    }

    #[test]
    fn each_failed_check_says_which() {
        let ring = ring(true);
        let sig = sign(&key(1), b"k", b"v");
        let old = sign(&key(4), b"k", b"v");
        let (r, d) = refused(ring.verify(SignatureHeaders::default(), b"k", b"v"));
        assert_eq!(r, Reason::Unsigned, "{d}");
        let half = SignatureHeaders { key_id: Some(b"MPS-1"), signature: None, repeated: false };
        assert_eq!(refused(ring.verify(half, b"k", b"v")).0, Reason::Unsigned);
        let cases: [(SignatureHeaders<'_>, &[u8], &str); 6] = [
            (headers("MPS-1", &sig), b"v2", "signature does not verify (key id MPS-1)"),
            (headers("NOPE", &sig), b"v", "unknown key id NOPE"),
            (headers("MPS-OLD", &old), b"v", "key id MPS-OLD was revoked"),
            (headers("MPS-1", &sig[..10]), b"v", "the signature is 10 bytes, not 64 (key id MPS-1)"),
            (headers("bad id", &sig), b"v", "the jointops-key-id header is not a valid key id"),
            (SignatureHeaders { repeated: true, ..headers("MPS-1", &sig) }, b"v", "more than once"),
        ];
        for (h, value, want) in cases {
            let (reason, detail) = refused(ring.verify(h, b"k", value));
            assert_eq!(reason, Reason::BadSignature);
            assert!(detail.contains(want), "{detail} should say {want}");
        }
        // The key is signed too: the same value under another key fails.
        assert!(ring.verify(headers("MPS-1", &sig), b"k2", b"v").is_err());
    }

    #[test]
    fn a_hub_that_does_not_require_signatures_still_checks_present_ones() {
        let ring = ring(false);
        assert!(ring.verify(SignatureHeaders::default(), b"k", b"v").unwrap().is_none());
        let sig = sign(&key(1), b"k", b"v");
        assert_eq!(refused(ring.verify(headers("MPS-1", &sig), b"k", b"x")).0, Reason::BadSignature);
        assert!(ring.verify(headers("MPS-1", &sig), b"k", b"v").unwrap().is_some());
    }

    #[test]
    fn refusals_never_carry_key_material() {
        let ring = ring(true);
        let pk = b64(&key(1));
        let sig = sign(&key(1), b"k", b"v");
        let (_, d) = refused(ring.verify(headers("MPS-1", &sig), b"k", b"x"));
        assert!(
            !d.contains(&pk)
                && !d.contains(&hex::encode(sig))
                && !d.contains(&hex::encode(key(1).verifying_key().as_bytes()))
        );
    }

    #[test]
    fn headers_are_found_and_repeats_noticed() {
        let h = SignatureHeaders::from_headers([("other", Some(&b"x"[..])), ("jointops-key-id", Some(b"K"))]);
        assert_eq!((h.key_id, h.signature, h.repeated), (Some(&b"K"[..]), None, false));
        let h = SignatureHeaders::from_headers([("jointops-signature", Some(&b"a"[..])), ("jointops-signature", None)]);
        assert!(h.repeated);
    }

    #[test]
    fn bad_keyring_entries_are_refused_with_the_key_named() {
        let pk = b64(&key(1));
        assert!(KeyEntry::parse("MPS", "bad id", &pk, None, None, false).is_err());
        assert!(KeyEntry::parse("mps", "K", &pk, None, None, false).is_err());
        let short = KeyEntry::parse("MPS", "K", "AAAA", None, None, false).unwrap_err();
        assert_eq!(short.to_string(), "trust key \"K\": public_key is 3 bytes, not 32");
        assert!(KeyEntry::parse("MPS", "K", "not base64!", None, None, false).is_err());
        assert!(KeyEntry::parse("MPS", "K", &pk, Some(2), Some(1), false).is_err());
        let a = KeyEntry::parse("MPS", "K", &pk, None, None, false).unwrap();
        assert_eq!(Keyring::new(true, [a.clone(), a]).unwrap_err(), KeyringError::Duplicate("K".into()));
    }
}
