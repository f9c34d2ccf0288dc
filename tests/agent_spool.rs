//! `spool_limit`: a file that would take the outbox over the limit is refused
//! whole, with an error naming the limit, the outbox's size and the
//! state_dir, and leaves the ledger and the outbox as they were.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use jointops::agent::ledger::{Ledger, LedgerError, Outgoing};
use jointops::agent::{publish_files, DeliveryError, PublishError, Watcher};
use jointops::config::AgentSettings;
use tokio::sync::oneshot;

const OP: &str = "OP-SPOOL";

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Three engagement rows `{prefix}1..=3`.
fn three(prefix: &str) -> String {
    let mut csv = String::from("record_id,kind,operation,occurred_at,people\n");
    for i in 1..=3 {
        csv.push_str(&format!("{prefix}{i},engagement,{OP},2023-10-10T12:00:00Z,{i}\n"));
    }
    csv
}

/// The ledger as a test can see it: the outbox, and which records it knows.
fn snapshot(settings: &AgentSettings, ids: &[&str]) -> (Vec<Outgoing>, Vec<bool>) {
    let ledger = Ledger::open(&settings.state_dir).unwrap();
    (ledger.pending().unwrap(), ids.iter().map(|id| ledger.get(id).unwrap().is_some()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_a_file_the_outbox_has_no_room_for() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![]);
    create_topics(&hub).await;
    let mut settings = agent(&hub, "MPS", dir.path().join("state"), &[(OP, "s")]);
    settings.spool_limit = 5;
    let state_dir = settings.state_dir.display().to_string();

    // Bigger than the limit on its own: refused, nothing recorded.
    let mut big = String::from("record_id,kind,operation,occurred_at,people\n");
    for i in 1..=8 {
        big.push_str(&format!("B{i},engagement,{OP},2023-10-10T12:00:00Z,{i}\n"));
    }
    let big = write(dir.path(), "big.csv", &big);
    let e = publish_files(&settings, std::slice::from_ref(&big), false).await.unwrap_err();
    let PublishError::Ledger(LedgerError::SpoolFull { limit: 5, current: 0, adding: 8, .. }) = &e else {
        panic!("{e:?}")
    };
    let text = e.to_string();
    for says in ["big.csv", "spool_limit 5", "holds 0", "add 8", &state_dir] {
        assert!(text.contains(says), "{says:?} not in: {text}");
    }
    assert_eq!(snapshot(&settings, &["B1", "B8"]), (vec![], vec![false, false]));

    // The broker unreachable: a file of three is accepted and stays in the outbox.
    let mut down = settings.clone();
    down.kafka.bootstrap = "127.0.0.1:1".into();
    down.kafka.give_up_after_s = 1;
    let first = write(dir.path(), "first.csv", &three("F"));
    let e = publish_files(&down, &[first], false).await.unwrap_err();
    let PublishError::Delivery(DeliveryError::Unreachable { left: 3, .. }) = &e else { panic!("{e:?}") };
    let text = e.to_string();
    assert!(text.contains("keeps its 3 messages") && text.contains(&state_dir), "{text}");
    let before = snapshot(&settings, &["F1", "S1", "S3"]);
    assert_eq!((before.0.len(), before.1.clone()), (3, vec![true, false, false]));

    // Three more do not fit beside them while the broker is still away.
    let second = write(dir.path(), "second.csv", &three("S"));
    let e = publish_files(&down, std::slice::from_ref(&second), false).await.unwrap_err();
    let PublishError::Both { file, delivery: DeliveryError::Unreachable { .. } } = &e else { panic!("{e:?}") };
    let PublishError::Ledger(LedgerError::SpoolFull { limit: 5, current: 3, adding: 3, .. }) = file.as_ref() else {
        panic!("{e:?}")
    };
    let text = e.to_string();
    assert!(text.contains("holds 3") && text.contains("spool_limit 5") && text.contains(&state_dir), "{text}");
    assert_eq!(snapshot(&settings, &["F1", "S1", "S3"]), before, "the refused file changed nothing");

    // Broker back: the outbox is delivered to make room, then the file goes.
    let summary = publish_files(&settings, &[second], false).await.unwrap();
    assert_eq!((summary.files[0].published, summary.redelivered), (3, 3));
    assert_eq!(snapshot(&settings, &["F1", "S1", "S3"]), (vec![], vec![true, true, true]));
    let events = consume_events(&hub.kafka.bootstrap, &hub.kafka.topic);
    let mut ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["F1", "F2", "F3", "S1", "S2", "S3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fails_a_file_bigger_than_the_limit_and_holds_one_that_must_wait() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![]);
    create_topics(&hub).await;
    let mut settings = agent(&hub, "MPS", dir.path().join("state"), &[(OP, "s")]);
    settings.spool_limit = 5;
    let mut down = settings.clone();
    down.kafka.bootstrap = "127.0.0.1:1".into();
    down.kafka.librdkafka.insert("message.timeout.ms".into(), "1000".into());
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut big = String::from("record_id,kind,operation,occurred_at,people\n");
    for i in 1..=6 {
        big.push_str(&format!("B{i},engagement,{OP},2023-10-10T12:00:00Z,{i}\n"));
    }
    drop_file(&inbox, "a-big.csv", &big);
    drop_file(&inbox, "b-first.csv", &three("F"));
    drop_file(&inbox, "c-second.csv", &three("S"));

    // Broker away: a-big can never fit; b-first is accepted; c-second waits.
    let watcher = Watcher::new(&down, &inbox);
    let mut status = watcher.status();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(watcher.run(async {
        let _ = rx.await;
    }));
    tokio::time::timeout(Duration::from_secs(30), status.wait_for(|s| s.waiting.is_some() && s.failed == 1))
        .await
        .expect("a-big failed and c-second waits")
        .unwrap();
    let s = status.borrow().clone();
    assert_eq!((s.accepted, s.outbox), (vec!["b-first.csv".to_string()], 3));
    assert!(s.waiting.unwrap().ends_with("c-second.csv"));
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    let r = read_json(&inbox.join("failed/a-big.csv.receipt.json"));
    let error = r["error"].as_str().unwrap();
    assert!(error.contains("spool_limit 5") && error.contains("add 6") && error.contains("holds 0"), "{error}");
    assert!(error.contains(&settings.state_dir.display().to_string()), "{error}");
    assert!(inbox.join("c-second.csv").exists() && inbox.join("b-first.csv").exists());
    assert_eq!(snapshot(&settings, &["F1", "S1"]).1, [true, false]);

    // Broker reachable: b-first is delivered, which makes room for c-second.
    let watcher = Watcher::new(&settings, &inbox);
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(watcher.run(async {
        let _ = rx.await;
    }));
    wait_until("both receipts", Duration::from_secs(60), || {
        inbox.join("done/b-first.csv.receipt.json").exists() && inbox.join("done/c-second.csv.receipt.json").exists()
    })
    .await;
    let _ = stop.send(());
    let stats = task.await.unwrap().unwrap();
    assert_eq!((stats.done, stats.outbox, stats.waiting), (2, 0, None));
    for name in ["b-first.csv", "c-second.csv"] {
        assert_eq!(read_json(&inbox.join(format!("done/{name}.receipt.json")))["published"], 3, "{name}");
    }
}
