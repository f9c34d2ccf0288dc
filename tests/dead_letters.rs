//! Bad input on the real broker: each kind goes to the dead-letter topic with
//! its reason and the contract's headers, the partition keeps moving, and
//! only the valid events count.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use jointops::codec::Registry;
use jointops::domain::{ArrestOffence, Outcome, OutcomeEvent};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

const T: i64 = 1_696_900_000_000; // 2023-10-10T01:06:40Z

fn arrest(force: &str, id: &str) -> OutcomeEvent {
    op1_arrest(force, id)
}

fn record(e: &OutcomeEvent) -> (Option<Vec<u8>>, Option<Vec<u8>>, Option<i32>) {
    (Some(e.identity_key().into_bytes()), Some(Registry::builtin().encode(e)), Some(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dead_lettered_with_reasons_and_the_partition_keeps_moving() {
    let dir = tempfile::tempdir().unwrap();
    let hub = op1_hub_one_partition(dir.path()).await;
    let reg = Registry::builtin();
    let good = arrest("MPS", "g1");
    let mut revision0 = arrest("MPS", "bad-rev");
    revision0.revision = 0;
    let mut unknown_op = arrest("MPS", "u1");
    unknown_op.operation = "OP-2".into();
    let mut early = arrest("MPS", "w1");
    early.occurred_at = T - 7 * 86_400_000;
    let outsider = arrest("BTP", "b1");
    let mut conflicting = good.clone();
    conflicting.outcome = Outcome::Arrest { offence_group: ArrestOffence::Weapons };
    let mut moved = good.clone();
    moved.revision = 2;
    moved.joint_ref = Some("abc".into());
    let mut unknown_schema = reg.encode(&arrest("MPS", "f1"));
    unknown_schema[2] ^= 0xFF;
    let mut trailing = reg.encode(&arrest("MPS", "t1"));
    trailing.push(7);
    let last = arrest("KENT", "g2");
    let key = |s: &str| Some(s.as_bytes().to_vec());

    // Everything on partition 0 (of one, so each key's own), so the good
    // events on either side prove it kept moving.
    let records = vec![
        record(&good),
        (key("x"), Some(b"not avro".to_vec()), Some(0)),
        (key("x"), None, Some(0)),
        (key("x"), Some(vec![0xC3]), Some(0)),
        (key("OP-1/MPS/f1"), Some(unknown_schema), Some(0)),
        (key("OP-1/MPS/t1"), Some(trailing), Some(0)),
        record(&revision0),
        (key("OP-1/MPS/wrong"), Some(reg.encode(&arrest("MPS", "k1"))), Some(0)),
        (None, Some(reg.encode(&arrest("MPS", "k2"))), Some(0)),
        record(&unknown_op),
        record(&early),
        record(&outsider),
        record(&conflicting),
        record(&moved),
        record(&good),
        record(&last),
    ];
    let n = records.len() as i64;
    send_raw(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &records).await;

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;

    let t = totals(&hub, "OP-1");
    assert_eq!(t.joint.arrests, 2, "only g1 and g2 count");
    let want: BTreeMap<String, i64> = [
        ("undecodable", 4),
        ("unknown-schema", 1),
        ("invalid", 1),
        ("key-mismatch", 2),
        ("unknown-operation", 1),
        ("outside-window", 1),
        ("force-not-in-operation", 1),
        ("conflicting-revision", 1),
        ("identity-changed", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(dead_letters(&hub), want);
    let offsets = jointops::store::Store::offsets(
        &jointops::store::SqliteStore::open_read(&hub.store.path).unwrap(),
        &hub.kafka.topic,
    )
    .unwrap();
    assert_eq!(offsets.get(&0), Some(&n), "partition 0 consumed to its end");

    // The dead-letter topic keeps the original key and value, and says why and whence.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &hub.kafka.bootstrap)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&hub.kafka.dlq_topic]).unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 13 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers: BTreeMap<String, String> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            seen.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec), headers));
        }
    }
    assert_eq!(seen.len(), 13, "13 dead letters on the topic");
    let garbage = seen.iter().find(|(_, v, _)| v.as_deref() == Some(b"not avro".as_slice())).expect("garbage kept");
    assert_eq!(garbage.0.as_deref(), Some(b"x".as_slice()));
    assert_eq!(garbage.2["jointops-error"], "undecodable");
    assert_eq!(garbage.2["jointops-source-topic"], hub.kafka.topic);
    assert_eq!(garbage.2["jointops-source-partition"], "0");
    assert_eq!(garbage.2["jointops-source-offset"], "1");
    assert!(garbage.2["jointops-error-detail"].contains("C3 01"), "{}", garbage.2["jointops-error-detail"]);
    for (_, _, h) in &seen {
        for name in [
            "jointops-error",
            "jointops-error-detail",
            "jointops-source-topic",
            "jointops-source-partition",
            "jointops-source-offset",
        ] {
            assert!(h.contains_key(name), "{name} missing in {h:?}");
        }
    }
}
