//! `agent watch` through a broker outage, on a broker of this test's own
//! (the shared one is never stopped): files dropped while the broker is down
//! are accepted into the outbox and kept across a restart of the agent, and
//! reach Kafka once per revision when the broker is back.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use jointops::agent::ledger::Ledger;

const OP: &str = "OP-OUTAGE";

/// A single-node broker on a free port, with its own data folder; stopped
/// when dropped, so that a failing test leaves no broker behind.
struct OwnBroker {
    port: u16,
    data: tempfile::TempDir,
}

impl OwnBroker {
    fn start() -> OwnBroker {
        // Client port and controller port (+1000) both free; spread by pid so
        // that two test runs at once do not reach for the same one.
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        let base = 19_100 + (std::process::id() % 400) as u16;
        let port = (base..base + 400).find(|p| free(*p) && free(p + 1000)).expect("a free port pair");
        let b = OwnBroker { port, data: tempfile::tempdir().unwrap() };
        b.kafka_sh("start");
        b
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kafka_sh(&self, cmd: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/kafka.sh");
        let out = Command::new(script)
            .arg(cmd)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_DATA", self.data.path())
            .env("KAFKA_PARTITIONS", "3")
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx512m")
            .output()
            .expect("deploy/local/kafka.sh runs");
        assert!(
            out.status.success(),
            "kafka.sh {cmd} on port {}: {}{}",
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kafka_sh("stop");
    }
}

fn receipt(inbox: &Path, name: &str) -> PathBuf {
    inbox.join("done").join(format!("{name}.receipt.json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_dropped_while_the_broker_is_down_are_delivered_once_it_is_back() {
    require_broker(); // the shared broker proves the Kafka jars and Java are in place
    let broker = OwnBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path(), vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    hub.kafka.bootstrap = broker.bootstrap();
    hub.kafka.partitions = 3;
    create_topics(&hub).await;
    let mut settings = agent(&hub, "ESSEX", dir.path().join("state"), &[(OP, "outage")]);
    // Attempts fail fast while the broker is away, so the retry path runs.
    settings.kafka.librdkafka.insert("message.timeout.ms".into(), "3000".into());
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();

    // Broker up: version 0 of the export goes through.
    let v0 = synthetic_export(OP, 2_000, 0);
    let mut w = RunningWatcher::start(&settings, &inbox);
    drop_file(&inbox, "1-v0.csv", &v0.csv);
    wait_until("1-v0 delivered", Duration::from_secs(60), || receipt(&inbox, "1-v0.csv").exists()).await;

    // Broker down. Version 1 (revisions and withdrawals) is accepted into
    // the outbox all the same.
    broker.kafka_sh("stop");
    let v1 = synthetic_export(OP, 2_000, 1);
    drop_file(&inbox, "2-v1.csv", &v1.csv);
    w.wait_for("2-v1 accepted", Duration::from_secs(60), |s| s.accepted == ["2-v1.csv"]).await;
    let planned_v1 = w.status.borrow().outbox;
    assert!(planned_v1 > 0);
    w.wait_for("a failed delivery attempt", Duration::from_secs(30), |s| s.failed_attempts >= 1).await;
    // The agent stops during the outage (SIGTERM, say): nothing is lost.
    let stats = w.stop().await;
    assert_eq!((stats.outbox, stats.done), (planned_v1, 1));
    {
        let ledger = Ledger::open(&settings.state_dir).unwrap();
        assert_eq!(ledger.pending().unwrap().len() as u64, planned_v1, "the outbox kept every message");
    }
    assert!(inbox.join("2-v1.csv").exists() && !receipt(&inbox, "2-v1.csv").exists());

    // Started again, still without a broker: v1 is resumed, and version 2
    // is accepted beside it.
    let mut w = RunningWatcher::start(&settings, &inbox);
    let v2 = synthetic_export(OP, 2_000, 2);
    drop_file(&inbox, "3-v2.csv", &v2.csv);
    w.wait_for("3-v2 accepted", Duration::from_secs(60), |s| s.accepted == ["2-v1.csv", "3-v2.csv"]).await;
    let waiting = w.status.borrow().outbox;
    w.wait_for("failed attempts", Duration::from_secs(30), |s| s.failed_attempts >= 2).await;

    // The broker returns: everything drains, and the receipts are those of
    // the first attempt.
    let restart = Instant::now();
    broker.kafka_sh("start");
    let (broker_start, back) = (restart.elapsed(), Instant::now());
    w.wait_for("the outbox drained", Duration::from_secs(120), |s| s.outbox == 0 && s.done == 2).await;
    let drained_in = back.elapsed();
    let stats = w.stop().await;
    assert_eq!((stats.delivered, stats.outbox), (waiting, 0));
    let r1 = read_json(&receipt(&inbox, "2-v1.csv"));
    assert_eq!(r1["published"].as_u64(), Some(planned_v1), "v1's receipt counts what it planned: {r1}");
    assert_eq!(r1["withdrawn"].as_u64(), Some(40), "{r1}");
    assert!(Ledger::open(&settings.state_dir).unwrap().pending().unwrap().is_empty());

    // On the topic: every planned revision. A copy is possible by design (an
    // attempt that timed out just as the broker took it is sent again, with
    // the same bytes) and the hub absorbs it (R1); the totals below say so.
    let events = consume_events(&hub.kafka.bootstrap, &hub.kafka.topic);
    let distinct: BTreeSet<_> = events.iter().map(|e| (e.force.clone(), e.event_id.clone(), e.revision)).collect();
    assert_eq!(distinct.len() as u64, 2_000 + waiting, "every revision is on the topic");
    let copies = events.len() - distinct.len();

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    let totals = totals(&hub, OP).joint;
    assert_eq!((totals.people_engaged, totals.arrests), (v2.people_engaged, v2.arrests));
    assert!(dead_letters(&hub).is_empty(), "{:?}", dead_letters(&hub));
    eprintln!(
        "outage: broker restarted in {broker_start:?}; {waiting} messages drained {drained_in:?} after it answered; \
         {copies} copies on the topic"
    );
}
