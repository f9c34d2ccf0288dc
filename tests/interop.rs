//! Interoperability with an independent Avro implementation (Python fastavro):
//! events it encodes from `schemas/` alone are counted by the rollup on the
//! real broker, and events our agent encodes are read back by it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use jointops::codec::Registry;
use jointops::domain::{ChargeCount, ChargeOffence, Outcome, OutcomeEvent, SeizureItem};

fn python() -> PathBuf {
    let py = std::env::var("JOINTOPS_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&py).args(["-c", "import fastavro"]).status().is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import fastavro. tests/run.sh makes .venv with it; or set JOINTOPS_TEST_PYTHON to a python that has it.",
        py.display()
    );
    py
}

/// Runs `fastavro_interop.py MODE SCHEMA FILE` and returns its stdout.
fn script(mode: &str, file: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python())
        .arg(root.join("tests/interop/fastavro_interop.py"))
        .arg(mode)
        .arg(root.join("schemas/outcome-event.v1.avsc"))
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "fastavro {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_encoded_by_fastavro_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.txt");
    script("encode", &file);
    let records: Vec<_> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let (key, hex_value) = l.split_once('\t').unwrap();
            (Some(key.as_bytes().to_vec()), Some(hex::decode(hex_value).unwrap()), None)
        })
        .collect();
    assert_eq!(records.len(), 9);

    let hub = hub(dir.path(), vec![operation("OP-X", "2023-10-09T00:00:00Z", "2023-10-16T00:00:00Z", None)]);
    create_topics(&hub).await;
    send_raw(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &records).await;
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;

    assert!(dead_letters(&hub).is_empty(), "nothing dead-lettered: {:?}", dead_letters(&hub));
    let t = totals(&hub, "OP-X").joint;
    assert_eq!((t.arrests, t.people_charged, t.charges, t.charges_class_a, t.charges_weapons), (1, 1, 3, 2, 1));
    assert_eq!((t.drugs_class_a_mg, t.cash_pence, t.joint_outcomes), (250_000, 5000, 1));
    assert_eq!((t.lines_closed, t.people_engaged, t.provisional_seizures), (0, 40, 0));
}

#[test]
fn events_encoded_by_jointops_are_read_by_fastavro() {
    let registry = Registry::builtin();
    let events = [
        OutcomeEvent {
            event_id: "MPS-CH-0001".into(),
            revision: 3,
            force: "MPS".into(),
            operation: "CLIW-2023-10".into(),
            occurred_at: 1_696_900_000_000,
            reported_at: 1_696_900_360_123,
            withdrawn: false,
            joint_ref: Some("32d2e917ef24b637617d8c38eee36b62".into()),
            outcome: Outcome::Charge {
                charges: vec![
                    ChargeCount { offence: ChargeOffence::DrugSupplyClassA, count: 2 },
                    ChargeCount { offence: ChargeOffence::Other, count: 1 },
                ],
            },
        },
        OutcomeEvent {
            event_id: "MPS-SZ-0002".into(),
            revision: 1,
            force: "MPS".into(),
            operation: "CLIW-2023-10".into(),
            occurred_at: 1_696_900_000_000,
            reported_at: 1_696_900_000_000,
            withdrawn: true,
            joint_ref: None,
            outcome: Outcome::Seizure { item: SeizureItem::Cash, quantity: 1_000_000_000_000, provisional: true },
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.hex");
    let lines: Vec<String> = events.iter().map(|e| hex::encode(registry.encode(e))).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let rows: Vec<serde_json::Value> =
        script("decode", &file).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["event_id"], "MPS-CH-0001");
    assert_eq!(rows[0]["revision"], 3);
    assert_eq!(rows[0]["reported_at"], 1_696_900_360_123i64);
    assert_eq!(rows[0]["occurred_at"], 1_696_900_000_000i64);
    assert_eq!(rows[0]["joint_ref"], "32d2e917ef24b637617d8c38eee36b62");
    assert_eq!(rows[0]["outcome"]["type"], "jointops.v1.Charge");
    assert_eq!(rows[0]["outcome"]["charges"][0]["offence"], "DRUG_SUPPLY_CLASS_A");
    assert_eq!(rows[0]["outcome"]["charges"][1]["count"], 1);
    assert_eq!(rows[1]["withdrawn"], true);
    assert_eq!(rows[1]["joint_ref"], serde_json::Value::Null);
    assert_eq!(rows[1]["outcome"]["quantity"], 1_000_000_000_000i64);
    assert_eq!(rows[1]["outcome"]["item"], "CASH");
}
