//! What becomes of one consumed record: counted, or dead-lettered with a
//! reason. No Kafka types here, so every path is testable without a broker.

use crate::codec::Registry;
use crate::domain::{Applied, Engine, Operations, OutcomeEvent, Reason};

/// Where a record came from, and what it carries.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Valid and given to the engine; `Some` when the report's state changed.
    Counted {
        applied: Applied,
        changed: Option<(String, String)>,
    },
    Dead {
        reason: Reason,
        detail: String,
        force: Option<String>,
        event_id: Option<String>,
    },
}

fn dead(reason: Reason, detail: String, event: Option<&OutcomeEvent>) -> Verdict {
    Verdict::Dead { reason, detail, force: event.map(|e| e.force.clone()), event_id: event.map(|e| e.event_id.clone()) }
}

/// Decode → validate (§2) → identity key (§3) → the hub's operations (R6) →
/// the engine (R1–R5).
pub fn classify(registry: &Registry, operations: &Operations, engine: &mut Engine, msg: Incoming<'_>) -> Verdict {
    let event = match registry.decode(msg.value.unwrap_or_default()) {
        Ok(e) => e,
        Err(e) => return dead(e.reason(), e.to_string(), None),
    };
    if let Err(e) = event.validate() {
        return dead(Reason::Invalid, e.to_string(), Some(&event));
    }
    let expected = event.identity_key();
    if msg.key != Some(expected.as_bytes()) {
        let got = match msg.key {
            None => "no key".to_string(),
            Some(k) => format!("key {:?}", String::from_utf8_lossy(&k[..k.len().min(200)])),
        };
        return dead(Reason::KeyMismatch, format!("{got}, the identity key is {expected:?}"), Some(&event));
    }
    if let Err((reason, detail)) = operations.check(&event) {
        return dead(reason, detail, Some(&event));
    }
    let (force, event_id) = (event.force.clone(), event.event_id.clone());
    match engine.apply(event) {
        Ok(applied) => Verdict::Counted { applied, changed: applied.changed().then_some((force, event_id)) },
        Err(refused) => Verdict::Dead {
            reason: refused.reason(),
            detail: refused.to_string(),
            force: Some(force),
            event_id: Some(event_id),
        },
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

    fn run(e: &OutcomeEvent, key: Option<&str>, engine: &mut Engine) -> Verdict {
        let reg = Registry::builtin();
        let value = reg.encode(e);
        classify(reg, &ops(), engine, Incoming { key: key.map(str::as_bytes), value: Some(&value) })
    }

    fn reason(v: Verdict) -> Option<Reason> {
        match v {
            Verdict::Dead { reason, .. } => Some(reason),
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
        let reg = Registry::builtin();
        let v = classify(reg, &ops(), &mut engine, Incoming { key: None, value: None });
        assert_eq!(reason(v), Some(Reason::Undecodable));
        assert_eq!(engine.totals("OP").unwrap().joint.arrests, 1, "only the good event counts");
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
            Verdict::Dead { reason, detail, force, .. } => {
                assert_eq!((reason, force.as_deref()), (Reason::Invalid, Some("MPS")));
                assert!(detail.contains("people_engaged"), "{detail}");
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
            let verdict = classify(reg, &ops(), &mut engine, Incoming { key: key.as_deref(), value: Some(&value) });
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
            let _ = classify(reg, &ops(), &mut engine, Incoming { key: Some(e.identity_key().as_bytes()), value: Some(&value) });
        }
    }
}
