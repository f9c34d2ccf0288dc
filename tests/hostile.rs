//! Hostile input on the wire: every kind lands in the dead-letter topic with
//! the right reason, the rollup neither panics nor stalls, and the totals are
//! those of the valid events alone.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use jointops::codec::{Registry, MAGIC};
use jointops::domain::{ArrestOffence, ChargeCount, ChargeOffence, Engine, Outcome, OutcomeEvent, SeizureItem};
use jointops::store::{DeadLetterLog, SqliteStore};

const T: i64 = 1_696_900_000_000; // 2023-10-10T01:06:40Z, inside OP-1's window

fn base(id: &str) -> OutcomeEvent {
    OutcomeEvent {
        event_id: id.into(),
        revision: 1,
        force: "MPS".into(),
        operation: "OP-1".into(),
        occurred_at: T,
        reported_at: T + 60_000,
        withdrawn: false,
        joint_ref: None,
        outcome: Outcome::Arrest { offence_group: ArrestOffence::Weapons },
    }
}

fn zigzag(v: i64) -> Vec<u8> {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

fn header() -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.extend_from_slice(&Registry::builtin().current().fingerprint.to_le_bytes());
    v
}

/// A v1 datum written field by field, so that each field can be spoiled.
fn datum(event_id: &[u8], joint_union: i64, outcome_branch: i64, enum_index: i64) -> Vec<u8> {
    let mut v = header();
    v.extend(zigzag(event_id.len() as i64));
    v.extend_from_slice(event_id);
    v.extend(zigzag(1)); // revision
    for s in ["MPS", "OP-1"] {
        v.extend(zigzag(s.len() as i64));
        v.extend_from_slice(s.as_bytes());
    }
    v.extend(zigzag(T));
    v.extend(zigzag(T + 60_000));
    v.push(0); // withdrawn
    v.extend(zigzag(joint_union));
    v.extend(zigzag(outcome_branch));
    v.extend(zigzag(enum_index));
    v
}

type Case = (&'static str, Vec<u8>, Vec<u8>);

fn event_case(reason: &'static str, e: &OutcomeEvent) -> Case {
    (reason, e.identity_key().into_bytes(), Registry::builtin().encode(e))
}

fn invalid_events() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |f: &dyn Fn(&mut OutcomeEvent)| {
        let mut e = base("inv");
        f(&mut e);
        cases.push(event_case("invalid", &e));
    };
    add(&|e| e.force = "mps".into());
    add(&|e| e.force = "M".into());
    add(&|e| e.operation = "OP 1".into());
    add(&|e| e.event_id = "x".repeat(129));
    add(&|e| e.event_id = "bad/id".into());
    add(&|e| e.event_id = String::new());
    add(&|e| e.joint_ref = Some("has space".into()));
    add(&|e| e.revision = 0);
    add(&|e| e.revision = -3);
    add(&|e| e.outcome = Outcome::Charge { charges: vec![] });
    add(&|e| e.outcome = Outcome::Charge { charges: vec![ChargeCount { offence: ChargeOffence::Other, count: 0 }] });
    add(&|e| e.outcome = Outcome::Charge { charges: vec![ChargeCount { offence: ChargeOffence::Other, count: 1001 }] });
    add(&|e| {
        let c = ChargeCount { offence: ChargeOffence::Weapons, count: 1 };
        e.outcome = Outcome::Charge { charges: vec![c, c] }
    });
    add(&|e| e.outcome = Outcome::Seizure { item: SeizureItem::Cash, quantity: 0, provisional: false });
    add(&|e| e.outcome = Outcome::Seizure { item: SeizureItem::Cash, quantity: 1_000_000_000_001, provisional: false });
    add(&|e| e.outcome = Outcome::Seizure { item: SeizureItem::Cash, quantity: i64::MAX, provisional: false });
    add(&|e| e.outcome = Outcome::Seizure { item: SeizureItem::Cash, quantity: i64::MIN, provisional: false });
    add(&|e| e.outcome = Outcome::Engagement { people: 0 });
    add(&|e| e.outcome = Outcome::Engagement { people: 1_000_001 });
    add(&|e| e.occurred_at = e.reported_at + 24 * 3_600_000 + 1);
    add(&|e| e.reported_at = 4_102_444_800_000); // 2100-01-01
    add(&|e| {
        e.occurred_at = 946_684_799_999; // just before 2000
        e.reported_at = 946_684_799_999;
    });
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_dead_lettered_and_only_valid_events_count() {
    let dir = tempfile::tempdir().unwrap();
    let hub = op1_hub_one_partition(dir.path()).await;
    let reg = Registry::builtin();
    let key = |s: &str| s.as_bytes().to_vec();
    let good_datum = reg.encode(&base("ok"));
    let mut cases: Vec<Case> = vec![
        ("undecodable", key("k"), vec![]),
        ("undecodable", key("k"), vec![0xC3]),
        ("undecodable", key("k"), vec![0x00, 0x01, 0x02]),
        ("unknown-schema", key("k"), {
            let mut v = good_datum.clone();
            v[2..10].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
            v
        }),
        ("undecodable", key("k"), good_datum[..good_datum.len() - 1].to_vec()),
        ("undecodable", key("k"), good_datum[..14].to_vec()),
        ("undecodable", key("k"), [good_datum.as_slice(), &[0, 0, 0]].concat()),
        ("undecodable", key("k"), [header(), zigzag(i64::MAX)].concat()),
        ("undecodable", key("k"), [header(), zigzag(i64::MAX - 1)].concat()),
        ("undecodable", key("k"), [header(), zigzag(-1)].concat()),
        ("undecodable", key("k"), [header(), zigzag(i64::MIN)].concat()),
        ("undecodable", key("k"), [header(), vec![0xFF; 11]].concat()),
        ("undecodable", key("OP-1/MPS/x"), datum(&[0x78, 0xFF, 0xFE], 0, 0, 0)),
        ("undecodable", key("OP-1/MPS/x"), datum(b"x", 2, 0, 0)),
        ("undecodable", key("OP-1/MPS/x"), datum(b"x", -1, 0, 0)),
        ("undecodable", key("OP-1/MPS/x"), datum(b"x", 0, 6, 0)),
        ("undecodable", key("OP-1/MPS/x"), datum(b"x", 0, 0, 5)),
        ("undecodable", key("OP-1/MPS/x"), datum(b"x", 0, 0, -1)),
        // Valid Avro of a foreign schema, framed with its own fingerprint...
        ("unknown-schema", key("k"), {
            let foreign = apache_avro::Schema::parse_str(
                r#"{"type":"record","name":"Foo","fields":[{"name":"a","type":"string"}]}"#,
            )
            .unwrap();
            let mut record = apache_avro::types::Record::new(&foreign).unwrap();
            record.put("a", "hello");
            let body = apache_avro::to_avro_datum(&foreign, record).unwrap();
            let fp = jointops::codec::canonical::rabin(
                jointops::codec::canonical::parsing_canonical_form(
                    r#"{"type":"record","name":"Foo","fields":[{"name":"a","type":"string"}]}"#,
                )
                .unwrap()
                .as_bytes(),
            );
            [MAGIC.to_vec(), fp.to_le_bytes().to_vec(), body].concat()
        }),
        // ...and the same datum passed off under ours.
        ("undecodable", key("k"), [header(), zigzag(5), b"hello".to_vec()].concat()),
        // An overlong string: refused as invalid before it is copied.
        ("invalid", key("k"), [header(), zigzag(5000), vec![b'a'; 5000]].concat()),
    ];
    cases.extend(invalid_events());
    let mut moved = base("ok");
    moved.revision = 2;
    moved.joint_ref = Some("j1".into());
    let mut conflicting = base("ok");
    conflicting.reported_at += 1;
    let mut unknown_op = base("u");
    unknown_op.operation = "OP-9".into();
    let mut outside = base("w");
    outside.occurred_at = T + 30 * 86_400_000;
    outside.reported_at = outside.occurred_at;
    let mut outsider = base("b");
    outsider.force = "BTP".into();
    cases.extend([
        ("key-mismatch", key("OP-1/MPS/other"), reg.encode(&base("km"))),
        ("identity-changed", moved.identity_key().into_bytes(), reg.encode(&moved)),
        ("conflicting-revision", base("ok").identity_key().into_bytes(), reg.encode(&conflicting)),
        ("unknown-operation", unknown_op.identity_key().into_bytes(), reg.encode(&unknown_op)),
        ("outside-window", outside.identity_key().into_bytes(), reg.encode(&outside)),
        ("force-not-in-operation", outsider.identity_key().into_bytes(), reg.encode(&outsider)),
    ]);

    // Valid events between every hostile one, all on one partition.
    let mut records = Vec::new();
    let mut expected_reason = BTreeMap::new();
    let mut valid = vec![base("ok")];
    records.push((Some(base("ok").identity_key().into_bytes()), Some(reg.encode(&base("ok"))), Some(0)));
    for (i, (reason, k, v)) in cases.iter().enumerate() {
        expected_reason.insert(records.len() as i64, *reason);
        records.push((Some(k.clone()), Some(v.clone()), Some(0)));
        let mut good = base(&format!("g{i}"));
        good.outcome = Outcome::Engagement { people: i as i32 + 1 };
        records.push((Some(good.identity_key().into_bytes()), Some(reg.encode(&good)), Some(0)));
        valid.push(good);
    }
    // A null value and a lone byte with no key at all, at the end.
    expected_reason.insert(records.len() as i64, "undecodable");
    records.push((None, None, Some(0)));
    expected_reason.insert(records.len() as i64, "undecodable");
    records.push((None, Some(vec![0x42]), Some(0)));
    send_raw(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &records).await;

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let stats = rollup.stop().await;
    assert_eq!(stats.consumed, records.len() as u64, "no record skipped, none stalled");

    let got: BTreeMap<i64, String> = SqliteStore::open_read(&hub.store.path)
        .unwrap()
        .dead_letters(None)
        .unwrap()
        .into_iter()
        .map(|d| (d.offset, d.reason))
        .collect();
    let want: BTreeMap<i64, String> = expected_reason.iter().map(|(o, r)| (*o, r.to_string())).collect();
    assert_eq!(got, want, "each hostile record at its offset with its reason");
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for r in want.values() {
        *by_reason.entry(r.as_str()).or_default() += 1;
    }
    println!("{} hostile records dead-lettered by reason: {by_reason:?}", want.len());

    let mut reference = Engine::new();
    for e in valid {
        reference.apply(e).unwrap();
    }
    assert_eq!(&totals(&hub, "OP-1"), reference.totals("OP-1").unwrap());
}
