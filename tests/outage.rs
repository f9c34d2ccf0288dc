//! A broker stopped and started again mid-stream (`deploy/local/kafka.sh
//! stop/start`): the rollup recovers by itself and the totals are exact.
//! Runs its own broker on another port, so other tests keep theirs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use jointops::domain::Engine;
use jointops::loadgen;
use jointops::store::{SqliteStore, Store};

struct OwnBroker {
    port: u16,
    data: PathBuf,
}

impl OwnBroker {
    fn kafka_sh(&self, action: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/kafka.sh");
        let status = Command::new(script)
            .arg(action)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_DATA", &self.data)
            .status()
            .expect("deploy/local/kafka.sh runs");
        assert!(status.success(), "kafka.sh {action} on port {} failed", self.port);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kafka_sh("stop");
    }
}

fn consumed(settings: &jointops::config::HubSettings) -> i64 {
    SqliteStore::open_read(&settings.store.path)
        .ok()
        .and_then(|s| s.offsets(&settings.kafka.topic).ok())
        .map_or(0, |o| o.values().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_rides_out_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = OwnBroker { port: 19292, data: dir.path().join("kafka") };
    broker.kafka_sh("start");
    let mut hub =
        hub(dir.path(), vec![operation(loadgen::OPERATION, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    hub.kafka.bootstrap = format!("127.0.0.1:{}", broker.port);
    create_topics(&hub).await;
    let events = loadgen::generate(20_000, 11);
    let (first, second) = events.split_at(events.len() / 2);
    let p = producer(&hub.kafka.bootstrap);
    send_events(&p, &hub.kafka.topic, first).await;

    let rollup = RunningRollup::start(&hub).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while consumed(&hub) == 0 {
        assert!(Instant::now() < deadline, "no progress before the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.kafka_sh("stop");
    let down = Instant::now();
    broker.kafka_sh("start");
    println!("broker down for {:?}", down.elapsed());
    send_events(&p, &hub.kafka.topic, second).await;
    // Two records that must be dead-lettered after the outage.
    send_raw(&p, &hub.kafka.topic, &[(Some(b"a".to_vec()), Some(b"junk".to_vec()), None), (None, None, None)]).await;
    wait_caught_up(&hub, Duration::from_secs(120)).await;
    rollup.stop().await;

    let mut reference = Engine::new();
    for e in &events {
        reference.apply(e.clone()).unwrap();
    }
    assert_eq!(&totals(&hub, loadgen::OPERATION), reference.totals(loadgen::OPERATION).unwrap());
    assert_eq!(dead_letters(&hub).get("undecodable"), Some(&2));
    assert_eq!(consumed(&hub), events.len() as i64 + 2);
}
