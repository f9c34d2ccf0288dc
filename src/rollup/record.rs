//! The record step: what becomes of one consumed record, counted or
//! dead-lettered with a reason. A [`Record`] is plain data (no Kafka or store
//! types), so every path is testable without a broker. [`check`] is the
//! record's own checks (the live rollup and `dlq replay` share them);
//! [`step`] adds the engine's counting rules and is all the consume loop
//! asks of a record.

use crate::codec::Registry;
use crate::domain::{partition_for, Applied, Engine, Operations, OutcomeEvent, Reason};
use crate::trust::{Keyring, SignatureHeaders};

/// A record as it was read, borrowed from wherever it came from (a Kafka
/// message, a stored dead letter).
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub topic: &'a str,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// Every header, in order: the signature headers are picked from them,
    /// and a dead letter keeps them all.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// The partition it was read from, of how many the topic has.
    pub partition: i32,
    pub partitions: i32,
    pub offset: i64,
    /// When it reached the topic (ms), if the broker said.
    pub timestamp_ms: Option<i64>,
}

/// A record of nothing on partition 0 of 1, for tests to fill in.
#[cfg(test)]
pub(crate) fn record() -> Record<'static> {
    Record {
        topic: "in",
        key: None,
        value: None,
        headers: &[],
        partition: 0,
        partitions: 1,
        offset: 0,
        timestamp_ms: None,
    }
}

/// What the checks hold a record against: the hub's configuration.
#[derive(Clone, Copy)]
pub struct Checks<'a> {
    pub registry: &'a Registry,
    pub operations: &'a Operations,
    pub keyring: &'a Keyring,
}

/// A record that passed [`check`]: the event and its identity key, built
/// once here and handed on to the engine and the store.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    pub event: OutcomeEvent,
    pub identity: String,
}

/// A report whose state a record changed: everything the batch persists,
/// so that nobody asks the engine for it again.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    /// The report's new state.
    pub event: OutcomeEvent,
    pub identity: String,
    /// Its single-object encoding (current schema), as the store keeps it.
    pub value: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and given to the engine; `Some` when the report's state changed.
    Counted {
        applied: Applied,
        change: Option<Change>,
    },
    Dead(Dead),
}

/// A record refused by [`check`] or by the counting rules.
#[derive(Debug, PartialEq, Eq)]
pub struct Dead {
    pub reason: Reason,
    pub detail: String,
    pub force: Option<String>,
    pub event_id: Option<String>,
    pub operation: Option<String>,
}

fn dead(reason: Reason, detail: String, event: Option<&OutcomeEvent>) -> Dead {
    Dead {
        reason,
        detail,
        force: event.map(|e| e.force.clone()),
        event_id: event.map(|e| e.event_id.clone()),
        operation: event.map(|e| e.operation.clone()),
    }
}

/// A keyed record on another partition than its key's (§3). Keyless or
/// empty-keyed records have no partition of their own: they fail on the key.
fn wrong_partition(r: &Record<'_>) -> Option<String> {
    let key = r.key.filter(|k| !k.is_empty())?;
    let home = partition_for(key, r.partitions);
    (home != r.partition)
        .then(|| format!("on partition {} of {}, the key's partition is {home}", r.partition, r.partitions))
}

/// Partition (§3) → signature on the raw bytes (§7) → decode → the key's
/// force and window (§7) → validate (§2) → identity key (§3) → the hub's
/// operations (R6). Nothing unauthenticated is decoded.
pub fn check(c: Checks<'_>, r: &Record<'_>) -> Result<Checked, Dead> {
    if let Some(detail) = wrong_partition(r) {
        return Err(dead(Reason::WrongPartition, detail, None));
    }
    let value = r.value.unwrap_or_default();
    let signature = SignatureHeaders::from_headers(r.headers.iter().copied());
    let verified =
        c.keyring.verify(signature, r.key.unwrap_or_default(), value).map_err(|e| dead(e.reason, e.detail, None))?;
    let event = c.registry.decode(value).map_err(|e| dead(e.reason(), e.to_string(), None))?;
    if let Some(v) = verified {
        Keyring::bind(v, &event.force, event.reported_at).map_err(|e| dead(e.reason, e.detail, Some(&event)))?;
    }
    if let Err(e) = event.validate() {
        return Err(dead(Reason::Invalid, e.to_string(), Some(&event)));
    }
    let identity = event.identity_key();
    if r.key != Some(identity.as_bytes()) {
        let got = match r.key {
            None => "no key".to_string(),
            Some(k) => format!("key {:?}", String::from_utf8_lossy(&k[..k.len().min(200)])),
        };
        return Err(dead(Reason::KeyMismatch, format!("{got}, the identity key is {identity:?}"), Some(&event)));
    }
    if let Err((reason, detail)) = c.operations.check(&event) {
        return Err(dead(reason, detail, Some(&event)));
    }
    Ok(Checked { event, identity })
}

/// The record step: [`check`], then the engine (R1–R5). A changed report
/// comes back with its encoding, ready for the batch.
pub fn step(c: Checks<'_>, engine: &mut Engine, r: &Record<'_>) -> Verdict {
    let Checked { event, identity } = match check(c, r) {
        Ok(checked) => checked,
        Err(d) => return Verdict::Dead(d),
    };
    match engine.apply_keyed(&event, &identity) {
        Ok(applied) if applied.changed() => {
            let value = c.registry.encode(&event);
            Verdict::Counted { applied, change: Some(Change { event, identity, value }) }
        }
        Ok(applied) => Verdict::Counted { applied, change: None },
        Err(refused) => Verdict::Dead(dead(refused.reason(), refused.to_string(), Some(&event))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ArrestOffence, Operation, Outcome};

    const T: i64 = 1_696_900_000_000;

    fn ops() -> Operations {
        Operations::new([Operation {
            id: "OP".into(),
            name: String::new(),
            starts: T - 1000,
            ends: T + 1000,
            forces: Some(["MPS".to_string()].into()),
            utc_offset_ms: 0,
        }])
    }

    fn ev() -> OutcomeEvent {
        OutcomeEvent {
            event_id: "e1".into(),
            revision: 1,
            force: "MPS".into(),
            operation: "OP".into(),
            occurred_at: T,
            reported_at: T,
            withdrawn: false,
            joint_ref: None,
            outcome: Outcome::Arrest { offence_group: ArrestOffence::Other },
        }
    }

    /// A hub that does not require signatures, on a one-partition topic.
    fn raw(engine: &mut Engine, key: Option<&[u8]>, value: Option<&[u8]>) -> Verdict {
        let ring = Keyring::default();
        let c = Checks { registry: Registry::builtin(), operations: &ops(), keyring: &ring };
        step(c, engine, &Record { key, value, ..record() })
    }

    fn run(e: &OutcomeEvent, key: Option<&str>, engine: &mut Engine) -> Verdict {
        let value = Registry::builtin().encode(e);
        raw(engine, key.map(str::as_bytes), Some(&value))
    }

    fn reason(v: Verdict) -> Option<Reason> {
        match v {
            Verdict::Dead(d) => Some(d.reason),
            Verdict::Counted { .. } => None,
        }
    }

    #[test]
    fn each_check_gives_its_reason() {
        let mut engine = Engine::new();
        let good = ev();
        let key = good.identity_key();
        assert_eq!(reason(run(&good, Some(&key), &mut engine)), None);
        assert_eq!(reason(run(&good, Some("OP/MPS/other"), &mut engine)), Some(Reason::KeyMismatch));
        assert_eq!(reason(run(&good, None, &mut engine)), Some(Reason::KeyMismatch));
        let mut bad = ev();
        bad.revision = 0;
        assert_eq!(reason(run(&bad, Some(&key), &mut engine)), Some(Reason::Invalid));
        let mut unknown = ev();
        unknown.operation = "NOPE".into();
        assert_eq!(reason(run(&unknown, Some(&unknown.identity_key()), &mut engine)), Some(Reason::UnknownOperation));
        let mut other = ev();
        other.force = "KENT".into();
        assert_eq!(reason(run(&other, Some(&other.identity_key()), &mut engine)), Some(Reason::ForceNotInOperation));
        let mut late = ev();
        late.occurred_at = T + 1000;
        late.reported_at = T + 1000;
        assert_eq!(reason(run(&late, Some(&key), &mut engine)), Some(Reason::OutsideWindow));
        let mut conflict = ev();
        conflict.withdrawn = true;
        assert_eq!(reason(run(&conflict, Some(&key), &mut engine)), Some(Reason::ConflictingRevision));
        let mut moved = ev();
        moved.revision = 2;
        moved.joint_ref = Some("J".into());
        assert_eq!(reason(run(&moved, Some(&moved.identity_key()), &mut engine)), Some(Reason::IdentityChanged));
        let v = raw(&mut engine, None, None);
        assert_eq!(reason(v), Some(Reason::Undecodable));
        assert_eq!(engine.totals("OP").unwrap().joint.arrests, 1, "only the good event counts");
    }

    #[test]
    fn a_changed_report_comes_back_with_its_identity_and_encoding_and_a_repeat_with_nothing() {
        let mut engine = Engine::new();
        let e = ev();
        let key = e.identity_key();
        match run(&e, Some(&key), &mut engine) {
            Verdict::Counted { applied: Applied::New, change: Some(c) } => {
                assert_eq!((&c.event, &c.identity), (&e, &key));
                assert_eq!(Registry::builtin().decode(&c.value).unwrap(), e);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(run(&e, Some(&key), &mut engine), Verdict::Counted { applied: Applied::Duplicate, change: None });
        let mut next = ev();
        next.revision = 2;
        match run(&next, Some(&key), &mut engine) {
            Verdict::Counted { applied: Applied::Revised, change: Some(c) } => assert_eq!(c.event, next),
            other => panic!("{other:?}"),
        }
        assert_eq!(engine.report("MPS", "e1"), Some(&next), "the engine holds what the step handed on");
    }

    #[test]
    fn an_event_that_would_overflow_a_total_is_dead_lettered_as_invalid_naming_the_figure() {
        let mut engine = Engine::new();
        let mut near = crate::domain::OperationTotals::default();
        near.joint.people_engaged = i64::MAX - 1;
        engine.seed_totals("OP", near);
        let mut big = ev();
        big.outcome = Outcome::Engagement { people: 2 };
        match run(&big, Some(&big.identity_key()), &mut engine) {
            Verdict::Dead(d) => {
                assert_eq!((d.reason, d.force.as_deref()), (Reason::Invalid, Some("MPS")));
                assert!(d.detail.contains("people_engaged"), "{}", d.detail);
            }
            other => panic!("{other:?}"),
        }
        let good = ev();
        assert_eq!(reason(run(&good, Some(&good.identity_key()), &mut engine)), None, "the next event counts");
    }

    proptest::proptest! {
        /// Whatever arrives, classification neither panics nor counts
        /// anything that is not a valid event under its identity key.
        #[test]
        fn arbitrary_records_never_panic_and_only_valid_events_count(
            key in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            framed in proptest::prelude::any::<bool>(),
        ) {
            let reg = Registry::builtin();
            let mut value = Vec::new();
            if framed {
                value.extend_from_slice(&crate::codec::MAGIC);
                value.extend_from_slice(&reg.current().fingerprint.to_le_bytes());
            }
            value.extend_from_slice(&tail);
            let mut engine = Engine::new();
            let verdict = raw(&mut engine, key.as_deref(), Some(&value));
            if let Verdict::Counted { .. } = verdict {
                let e = reg.decode(&value).unwrap();
                proptest::prop_assert!(e.validate().is_ok());
                let identity = e.identity_key();
                proptest::prop_assert_eq!(key.as_deref(), Some(identity.as_bytes()));
            }
        }

        /// Valid events with one spoiled byte: still never a panic.
        #[test]
        fn spoiled_valid_events_never_panic(at in 0usize..200, byte in proptest::prelude::any::<u8>()) {
            let reg = Registry::builtin();
            let e = ev();
            let mut value = reg.encode(&e);
            let i = at % value.len();
            value[i] = byte;
            let mut engine = Engine::new();
            let _ = raw(&mut engine, Some(e.identity_key().as_bytes()), Some(&value));
        }
    }
}

/// The checks of §3 (partition) and §7 (signatures), and their order.
#[cfg(test)]
mod trust_tests {
    use super::*;
    use crate::domain::{ArrestOffence, Operation, Outcome};
    use crate::trust::{sign, KeyEntry, KEY_ID_HEADER, SIGNATURE_HEADER};
    use ed25519_dalek::SigningKey;

    const T: i64 = 1_696_900_000_000;

    fn ops() -> Operations {
        Operations::new([Operation {
            id: "OP".into(),
            name: String::new(),
            starts: T - 1000,
            ends: T + 1000,
            forces: None,
            utc_offset_ms: 0,
        }])
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn ring(require: bool) -> Keyring {
        let pk = |k: SigningKey| {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, k.verifying_key().as_bytes())
        };
        Keyring::new(
            require,
            [
                KeyEntry::parse("MPS", "MPS-1", &pk(key(1)), Some(T - 10), None, false).unwrap(),
                KeyEntry::parse("KENT", "KENT-1", &pk(key(2)), None, None, false).unwrap(),
            ],
        )
        .unwrap()
    }

    fn ev(force: &str) -> OutcomeEvent {
        OutcomeEvent {
            event_id: "e1".into(),
            revision: 1,
            force: force.into(),
            operation: "OP".into(),
            occurred_at: T,
            reported_at: T,
            withdrawn: false,
            joint_ref: None,
            outcome: Outcome::Arrest { offence_group: ArrestOffence::Other },
        }
    }

    /// Classifies `(key, value)` on its own partition of 6, signed by
    /// `signer` (seed, id) unless `None`.
    fn go(ring: &Keyring, key: &[u8], value: &[u8], signer: Option<(u8, &str)>, partition: Option<i32>) -> Verdict {
        let sig = signer.map(|(seed, _)| sign(&self::key(seed), key, value));
        let headers: Vec<(&str, Option<&[u8]>)> = match (signer, &sig) {
            (Some((_, id)), Some(sig)) => {
                vec![(KEY_ID_HEADER, Some(id.as_bytes())), (SIGNATURE_HEADER, Some(&sig[..]))]
            }
            _ => Vec::new(),
        };
        let partition = partition.unwrap_or_else(|| partition_for(key, 6));
        let c = Checks { registry: Registry::builtin(), operations: &ops(), keyring: ring };
        let r = Record { key: Some(key), value: Some(value), headers: &headers, partition, partitions: 6, ..record() };
        step(c, &mut Engine::new(), &r)
    }

    fn said(v: Verdict) -> (Option<Reason>, String) {
        match v {
            Verdict::Dead(d) => (Some(d.reason), d.detail),
            Verdict::Counted { .. } => (None, String::new()),
        }
    }

    fn encoded(e: &OutcomeEvent) -> (Vec<u8>, Vec<u8>) {
        (e.identity_key().into_bytes(), Registry::builtin().encode(e))
    }

    #[test]
    fn a_signed_event_of_the_keys_force_counts() {
        let (k, v) = encoded(&ev("MPS"));
        assert_eq!(said(go(&ring(true), &k, &v, Some((1, "MPS-1")), None)).0, None);
    }

    #[test]
    fn a_record_off_its_keys_partition_is_wrong_partition_before_any_other_check() {
        let (k, v) = encoded(&ev("MPS"));
        let home = partition_for(&k, 6);
        let (reason, detail) = said(go(&ring(true), &k, b"junk", None, Some((home + 1) % 6)));
        assert_eq!(reason, Some(Reason::WrongPartition));
        assert_eq!(detail, format!("on partition {} of 6, the key's partition is {home}", (home + 1) % 6));
        assert_eq!(
            said(go(&ring(true), &k, &v, Some((1, "MPS-1")), Some((home + 1) % 6))).0,
            Some(Reason::WrongPartition)
        );
    }

    #[test]
    fn unsigned_records_are_refused_whatever_they_hold_where_signatures_are_required() {
        let (k, v) = encoded(&ev("MPS"));
        assert_eq!(said(go(&ring(true), &k, &v, None, None)).0, Some(Reason::Unsigned));
        assert_eq!(said(go(&ring(true), &k, b"not avro", None, None)).0, Some(Reason::Unsigned));
        assert_eq!(said(go(&ring(false), &k, &v, None, None)).0, None, "a trial hub counts them");
    }

    #[test]
    fn the_signature_is_checked_before_the_value_is_decoded() {
        let (k, _) = encoded(&ev("MPS"));
        // Garbage signed by a key the hub does not know: never parsed.
        let (reason, detail) = said(go(&ring(false), &k, b"not avro", Some((9, "MPS-1")), None));
        assert_eq!((reason, detail.as_str()), (Some(Reason::BadSignature), "signature does not verify (key id MPS-1)"));
        // Garbage signed well is refused by the decoder, as before.
        assert_eq!(said(go(&ring(true), &k, b"not avro", Some((1, "MPS-1")), None)).0, Some(Reason::Undecodable));
    }

    #[test]
    fn one_forces_key_cannot_speak_for_another() {
        let (k, v) = encoded(&ev("MPS"));
        let (reason, detail) = said(go(&ring(true), &k, &v, Some((2, "KENT-1")), None));
        assert_eq!(
            (reason, detail.as_str()),
            (Some(Reason::BadSignature), "key KENT-1 belongs to KENT, the event names MPS")
        );
        // Signed by KENT's key but claiming to be MPS's: the signature fails.
        assert_eq!(said(go(&ring(true), &k, &v, Some((2, "MPS-1")), None)).0, Some(Reason::BadSignature));
    }

    #[test]
    fn the_keys_window_is_compared_with_reported_at() {
        let mut e = ev("MPS");
        e.reported_at = T - 11;
        e.occurred_at = T - 11;
        let (k, v) = encoded(&e);
        let (reason, detail) = said(go(&ring(true), &k, &v, Some((1, "MPS-1")), None));
        assert_eq!(reason, Some(Reason::BadSignature));
        assert!(detail.starts_with("key MPS-1 is valid from "), "{detail}");
    }
}
