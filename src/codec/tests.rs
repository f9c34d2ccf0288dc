//! Codec tests: round trips, the pinned fingerprint, hostile bytes, and
//! reading an older writer version through schema resolution.

use proptest::prelude::*;

use super::*;
use crate::domain::{ArrestOffence, ChargeCount, ChargeOffence, Outcome, SeizureItem};

/// Pinned: changing the v1 schema's parsing form breaks every agent in the
/// field. On the wire (little-endian) it is `ef9df2252ebbaba4`, which is what
/// fastavro's `fingerprint(…, "CRC-64-AVRO")` prints (tests/interop.rs).
const V1_FINGERPRINT: u64 = 0xa4ab_bb2e_25f2_9def;

pub(crate) fn sample(outcome: Outcome) -> OutcomeEvent {
    OutcomeEvent {
        event_id: "MPS-0001".into(),
        revision: 2,
        force: "MPS".into(),
        operation: "CLIW-2023-10".into(),
        occurred_at: 1_696_900_000_000,
        reported_at: 1_696_900_360_000,
        withdrawn: false,
        joint_ref: Some("0f3a".into()),
        outcome,
    }
}

fn outcomes() -> Vec<Outcome> {
    vec![
        Outcome::Arrest { offence_group: ArrestOffence::Violence },
        Outcome::Charge {
            charges: vec![
                ChargeCount { offence: ChargeOffence::DrugSupplyClassA, count: 2 },
                ChargeCount { offence: ChargeOffence::Weapons, count: 1 },
            ],
        },
        Outcome::Seizure { item: SeizureItem::DrugClassB, quantity: 9_300_000, provisional: true },
        Outcome::LineClosure { closure: crate::domain::ClosureType::NumberDeactivated },
        Outcome::Safeguarding { referral: crate::domain::Referral::Nrm },
        Outcome::Engagement { people: 250 },
    ]
}

#[test]
fn every_outcome_round_trips() {
    let reg = Registry::builtin();
    for o in outcomes() {
        let e = sample(o);
        assert_eq!(reg.decode(&reg.encode(&e)).unwrap(), e);
    }
}

#[test]
fn fast_codec_agrees_with_apache_avro_both_ways() {
    let reg = Registry::builtin();
    let schema = &reg.current().schema;
    for o in outcomes() {
        let e = sample(o);
        let bytes = reg.encode(&e);
        // apache-avro reads what the fast codec writes...
        let value = apache_avro::from_avro_datum(schema, &mut &bytes[HEADER_LEN..], None).unwrap();
        let written = apache_avro::to_avro_datum(schema, value).unwrap();
        // ...and writes the same bytes back.
        assert_eq!(written, &bytes[HEADER_LEN..]);
    }
}

#[test]
fn v1_fingerprint_is_pinned() {
    let reg = Registry::builtin();
    assert_eq!(reg.versions()[0].version, 1);
    assert_eq!(
        reg.versions()[0].fingerprint,
        V1_FINGERPRINT,
        "{:016x} {}",
        reg.versions()[0].fingerprint,
        reg.versions()[0].canonical
    );
    assert!(reg.versions()[0].canonical.contains(r#"{"name":"occurred_at","type":"long"}"#));
}

#[test]
fn the_fast_codec_implements_the_latest_version() {
    assert_eq!(Registry::builtin().current().version, FAST_VERSION);
}

#[test]
fn schemas_are_transitively_backward_compatible() {
    Registry::builtin().check_compatibility().unwrap();
}

#[test]
fn header_problems_are_named() {
    let reg = Registry::builtin();
    assert_eq!(reg.decode(&[]), Err(DecodeError::Empty));
    assert_eq!(reg.decode(&[0xC3]), Err(DecodeError::Short(1)));
    assert_eq!(reg.decode(&[0; 12]), Err(DecodeError::BadMagic(0, 0)));
    let mut v = reg.encode(&sample(outcomes()[0].clone()));
    v[2] ^= 1;
    assert_eq!(reg.decode(&v).unwrap_err().reason(), Reason::UnknownSchema);
}

#[test]
fn truncated_and_trailing_datums_are_undecodable() {
    let reg = Registry::builtin();
    let v = reg.encode(&sample(outcomes()[1].clone()));
    for cut in HEADER_LEN..v.len() {
        assert_eq!(reg.decode(&v[..cut]).unwrap_err().reason(), Reason::Undecodable, "cut at {cut}");
    }
    let mut longer = v.clone();
    longer.push(0);
    assert!(matches!(reg.decode(&longer), Err(DecodeError::Datum { .. })));
}

#[test]
fn huge_and_negative_lengths_are_refused_without_allocating() {
    let reg = Registry::builtin();
    let mut v = reg.encode(&sample(outcomes()[0].clone()));
    // event_id length: zigzag varint of i64::MAX, then of -5.
    v.truncate(HEADER_LEN);
    v.extend_from_slice(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
    assert!(reg.decode(&v).unwrap_err().to_string().contains("claims"));
    v.truncate(HEADER_LEN);
    v.push(0x09);
    assert!(reg.decode(&v).unwrap_err().to_string().contains("negative"));
}

#[test]
fn overlong_strings_and_arrays_are_invalid_before_anything_is_copied() {
    let reg = Registry::builtin();
    let mut e = sample(outcomes()[0].clone());
    e.event_id = "x".repeat(binary::MAX_STRING_BYTES as usize + 1);
    let err = reg.decode(&reg.encode(&e)).unwrap_err();
    assert_eq!(err.reason(), Reason::Invalid, "{err}");
    assert!(err.to_string().contains("event_id is 1025 long"), "{err}");
    let many = vec![ChargeCount { offence: ChargeOffence::Other, count: 1 }; binary::MAX_CHARGES + 1];
    let err = reg.decode(&reg.encode(&sample(Outcome::Charge { charges: many }))).unwrap_err();
    assert_eq!(err.reason(), Reason::Invalid, "{err}");
    // At the cap itself it still decodes (and validation then refuses the repeats).
    let e = sample(Outcome::Charge { charges: vec![ChargeCount { offence: ChargeOffence::Other, count: 1 }; 64] });
    assert!(reg.decode(&reg.encode(&e)).unwrap().validate().is_err());
}

#[test]
fn an_older_writer_version_is_resolved_to_the_current_one() {
    // A "v0" without `withdrawn` and `joint_ref`: both have defaults in v1.
    let v1: serde_json::Value = serde_json::from_str(SCHEMA_FILES[0].1).unwrap();
    let mut v0 = v1.clone();
    let fields = v0["fields"].as_array_mut().unwrap();
    fields.retain(|f| f["name"] != "withdrawn" && f["name"] != "joint_ref");
    let reg =
        Registry::from_files([("e.v0.avsc".to_string(), v0.to_string()), ("e.v1.avsc".to_string(), v1.to_string())])
            .unwrap();
    reg.check_compatibility().unwrap();
    let v0s = &reg.versions()[0];
    let mut e = sample(outcomes()[2].clone());
    e.joint_ref = None;
    // Write v0 with apache-avro, as an old agent would.
    let full = apache_avro::from_avro_datum(&reg.current().schema, &mut &reg.encode(&e)[HEADER_LEN..], None).unwrap();
    let apache_avro::types::Value::Record(mut fs) = full else { panic!() };
    fs.retain(|(n, _)| n != "withdrawn" && n != "joint_ref");
    let datum = apache_avro::to_avro_datum(&v0s.schema, apache_avro::types::Value::Record(fs)).unwrap();
    let mut value = MAGIC.to_vec();
    value.extend_from_slice(&v0s.fingerprint.to_le_bytes());
    value.extend_from_slice(&datum);
    assert_eq!(reg.decode(&value).unwrap(), e);
}

#[test]
fn an_incompatible_later_version_is_reported() {
    let v1: serde_json::Value = serde_json::from_str(SCHEMA_FILES[0].1).unwrap();
    let mut v2 = v1.clone();
    v2["fields"].as_array_mut().unwrap().push(serde_json::json!({"name": "required_new", "type": "string"}));
    let reg =
        Registry::from_files([("e.v1.avsc".into(), v1.to_string()), ("e.v2.avsc".into(), v2.to_string())]).unwrap();
    let problems = reg.check_compatibility().unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("v2 cannot read v1"), "{}", problems[0]);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..200), fast in any::<bool>()) {
        let reg = Registry::builtin();
        let mut v = Vec::new();
        if fast {
            v.extend_from_slice(&MAGIC);
            v.extend_from_slice(&reg.current().fingerprint.to_le_bytes());
        }
        v.extend_from_slice(&tail);
        if let Ok(e) = reg.decode(&v) {
            // Whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(reg.encode(&e), v);
        }
    }
}
