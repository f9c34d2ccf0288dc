//! A rollup stopped and restarted mid-stream (several times, with more
//! events arriving while it is down) counts nothing twice and misses nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jointops::domain::Engine;
use jointops::loadgen;
use jointops::store::{SqliteStore, Store};

fn consumed(settings: &jointops::config::HubSettings) -> i64 {
    if !settings.store.path.exists() {
        return 0;
    }
    SqliteStore::open_read(&settings.store.path).unwrap().offsets(&settings.kafka.topic).unwrap().values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_mid_stream_count_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub =
        hub(dir.path(), vec![operation(loadgen::OPERATION, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    // Small batches so that a stop lands between many commits.
    hub.rollup.batch_size = 500;
    create_topics(&hub).await;
    let events = loadgen::generate(20_000, 42);
    let (first, second) = events.split_at(events.len() / 2);
    let p = producer(&hub.kafka.bootstrap);
    send_events(&p, &hub.kafka.topic, first).await;

    let mut stops = 0;
    for round in 0..3 {
        let rollup = RunningRollup::start(&hub).await;
        // Stop as soon as this round made some progress, well before the end.
        let before = consumed(&hub);
        let deadline = Instant::now() + Duration::from_secs(60);
        while consumed(&hub) < before + 2000 {
            assert!(Instant::now() < deadline, "no progress in round {round}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rollup.stop().await;
        stops += 1;
        if round == 0 {
            // More events arrive while the rollup is down.
            send_events(&p, &hub.kafka.topic, second).await;
        }
    }
    assert!(consumed(&hub) < events.len() as i64, "the stops really were mid-stream");

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(120)).await;
    rollup.stop().await;

    let mut reference = Engine::new();
    for e in &events {
        reference.apply(e.clone()).unwrap();
    }
    let want = reference.totals(loadgen::OPERATION).unwrap();
    assert_eq!(&totals(&hub, loadgen::OPERATION), want, "after {stops} stops");
    assert_eq!(consumed(&hub), events.len() as i64);
}
