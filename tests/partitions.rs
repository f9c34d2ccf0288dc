//! The partition rule on the real broker (contract §3): librdkafka's
//! `murmur2_random` puts keys where our `partition_for` says; a record on
//! another partition is dead-lettered as `wrong-partition`, not counted
//! there, and `dlq replay` sends it to its key's partition, where it counts
//! once.

mod common;

use std::time::Duration;

use common::*;
use jointops::codec::Registry;
use jointops::domain::partition_for;
use jointops::store::{DeadLetterLog, SqliteStore, Store};
use rdkafka::producer::FutureRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_murmur2_random_puts_keys_where_partition_for_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path(), vec![]);
    let p = producer(&hub.kafka.bootstrap);
    let mut keys: Vec<String> = vec![
        "CLIW-2023-10/MPS/MPS-AR-0001".into(),
        "CLIW-2023-10/line_closure/3f1c0a9e5b7d2e4f6a8c0b1d3e5f7a9c".into(),
        "OP-X/KENT/K-1".into(),
    ];
    keys.extend((0..40).map(|i| format!("OP-1/MPS/e{i}")));
    for partitions in [6, 12] {
        hub.kafka.topic = unique("test.partitions");
        hub.kafka.partitions = partitions;
        create_topics(&hub).await;
        for key in &keys {
            let sent = p.send(FutureRecord::to(&hub.kafka.topic).key(key).payload("x"), Duration::from_secs(30)).await;
            let delivery = sent.map_err(|(e, _)| e).expect("acknowledged");
            assert_eq!(delivery.partition, partition_for(key.as_bytes(), partitions), "{key} of {partitions}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_on_another_partition_is_dead_lettered_and_replayed_to_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let hub = op1_hub(dir.path()).await;
    let p = producer(&hub.kafka.bootstrap);
    let stray = op1_arrest("MPS", "stray");
    let key = stray.identity_key().into_bytes();
    let home = partition_for(&key, 6);
    let elsewhere = (home + 3) % 6;
    let beside = op1_arrest("KENT", "beside");
    send_raw(&p, &hub.kafka.topic, &[(Some(key.clone()), Some(Registry::builtin().encode(&stray)), Some(elsewhere))])
        .await;
    send_events(&p, &hub.kafka.topic, std::slice::from_ref(&beside)).await;

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 1, "only the record on its own partition counts");
    let dead = SqliteStore::open_read(&hub.store.path).unwrap().dead_letters(None).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].reason.as_str(), dead[0].partition), ("wrong-partition", elsewhere));
    assert_eq!(dead[0].detail, format!("on partition {elsewhere} of 6, the key's partition is {home}"));

    let outcome = jointops::rollup::replay::replay(&hub, Some("wrong-partition"), false).await.unwrap();
    assert_eq!(outcome.replayed.len(), 1, "{outcome:?}");
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 2, "counted once replayed to its partition");
    let offsets = SqliteStore::open_read(&hub.store.path).unwrap().offsets(&hub.kafka.topic).unwrap();
    let before = i64::from(partition_for(beside.identity_key().as_bytes(), 6) == home);
    assert_eq!(offsets.get(&home), Some(&(before + 1)), "the replay went to partition {home}: {offsets:?}");
    assert_eq!(SqliteStore::open_read(&hub.store.path).unwrap().dead_letters(None).unwrap().len(), 1);
}
