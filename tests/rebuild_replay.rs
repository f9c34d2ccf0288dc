//! `rollup --rebuild` gives the live store's totals (and applies a corrected
//! configuration), taking over only once caught up and the live rollup has
//! stopped; `dlq replay` re-submits dead letters that a corrected
//! configuration accepts, and they are then counted once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use jointops::domain::{ArrestOffence, Engine, Outcome, OutcomeEvent};
use jointops::loadgen;
use jointops::store::{DeadLetterLog, SqliteStore, Store, TotalsReader};

const T: i64 = 1_696_900_000_000; // 2023-10-10
const FIRST_AT: i64 = 1_704_067_200_000; // 2024-01-01: when the first half reached the topic

fn late(i: usize) -> OutcomeEvent {
    OutcomeEvent {
        event_id: format!("late-{i}"),
        revision: 1,
        force: "MPS".into(),
        operation: "LATE-1".into(),
        occurred_at: T,
        reported_at: T,
        withdrawn: false,
        joint_ref: None,
        outcome: Outcome::Arrest { offence_group: ArrestOffence::DrugSupply },
    }
}

fn late_operation() -> jointops::config::OperationSettings {
    operation("LATE-1", "2023-10-09T00:00:00Z", "2023-10-16T00:00:00Z", None)
}

async fn until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_matches_the_live_store_then_applies_a_corrected_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let load_op = operation(loadgen::OPERATION, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None);
    let mut hub = hub(dir.path(), vec![load_op.clone()]);
    create_topics(&hub).await;
    let events = loadgen::generate(5_000, 3);
    let lates: Vec<OutcomeEvent> = (0..5).map(late).collect();
    let p = producer(&hub.kafka.bootstrap);
    let (first, second) = events.split_at(events.len() / 2);
    send_events_at(&p, &hub.kafka.topic, first, FIRST_AT).await;
    send_events_at(&p, &hub.kafka.topic, second, FIRST_AT + 86_400_000).await;
    send_events(&p, &hub.kafka.topic, &lates).await;

    let live = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let live_totals = totals(&hub, loadgen::OPERATION);
    let live_dead = dead_letters(&hub);
    // A moment between the two halves of the stream, by Kafka timestamp.
    let as_of = FIRST_AT + 1000;
    let live_as_of = {
        let store = SqliteStore::open_read(&hub.store.path).unwrap();
        jointops::asof::totals_as_of(&store, &hub.operations().unwrap(), loadgen::OPERATION, as_of).unwrap()
    };
    assert_ne!(live_as_of, live_totals, "the moment lies inside the stream");
    assert_eq!(live_dead.get("unknown-operation"), Some(&5));

    // A rebuild beside the running rollup: it catches up, then waits.
    let rebuild_path = dir.path().join("hub.sqlite.rebuild");
    let rebuild = RunningRollup::start_rebuild(&hub).await;
    let total = (events.len() + lates.len()) as i64;
    let consumed = |path: &std::path::Path| -> i64 {
        SqliteStore::open_read(path).ok().and_then(|s| s.offsets(&hub.kafka.topic).ok()).map_or(0, |o| o.values().sum())
    };
    until("the rebuild has caught up", Duration::from_secs(60), || consumed(&rebuild_path) == total).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // two swap checks pass while the live rollup runs
    assert!(rebuild_path.exists(), "no swap while the live rollup holds the store");
    assert_eq!(totals(&hub, loadgen::OPERATION), live_totals, "readers still see the live store");

    live.stop().await;
    until("the rebuilt store is swapped in", Duration::from_secs(30), || !rebuild_path.exists()).await;
    assert_eq!(totals(&hub, loadgen::OPERATION), live_totals, "rebuilt totals equal the live store's");
    assert_eq!(dead_letters(&hub), live_dead);
    // As-of figures come from the history, keyed by Kafka timestamps: the
    // rebuilt store gives the same ones.
    let ops = hub.operations().unwrap();
    let store = SqliteStore::open_read(&hub.store.path).unwrap();
    assert_eq!(jointops::asof::totals_as_of(&store, &ops, loadgen::OPERATION, as_of).unwrap(), live_as_of);
    assert_eq!(jointops::asof::totals_as_of(&store, &ops, loadgen::OPERATION, i64::MAX).unwrap(), live_totals);
    // The rebuild goes on as the live rollup.
    let more = more_events(300, 99);
    send_events(&p, &hub.kafka.topic, &more).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rebuild.stop().await;
    let mut reference = Engine::new();
    for e in events.iter().chain(&more) {
        reference.apply(e.clone()).unwrap();
    }
    assert_eq!(&totals(&hub, loadgen::OPERATION), reference.totals(loadgen::OPERATION).unwrap());

    // A corrected configuration (LATE-1 registered), applied by a rebuild.
    hub.operations.push(late_operation());
    let rebuild = RunningRollup::start_rebuild(&hub).await;
    until("the corrected rebuild is swapped in", Duration::from_secs(60), || {
        !rebuild_path.exists() && totals(&hub, "LATE-1").joint.arrests == 5
    })
    .await;
    rebuild.stop().await;
    assert_eq!(dead_letters(&hub).get("unknown-operation"), None);
    assert_eq!(&totals(&hub, loadgen::OPERATION), reference.totals(loadgen::OPERATION).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_dead_letters_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = hub(dir.path(), vec![]);
    create_topics(&hub).await;
    let p = producer(&hub.kafka.bootstrap);
    let lates: Vec<OutcomeEvent> = (0..4).map(late).collect();
    send_events(&p, &hub.kafka.topic, &lates).await;
    send_raw(&p, &hub.kafka.topic, &[(Some(b"k".to_vec()), Some(b"junk".to_vec()), None)]).await;

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    assert_eq!(dead_letters(&hub).get("unknown-operation"), Some(&4));

    // Before the fix: nothing is replayable.
    let outcome = jointops::rollup::replay::replay(&hub, None, false).await.unwrap();
    assert!(outcome.replayed.is_empty());
    assert_eq!(outcome.still_refused.len(), 5);

    // A rollup still running with the old configuration would refuse them
    // again: the replay says so.
    let old = RunningRollup::start(&hub).await;
    let lock = dir.path().join("hub.sqlite.lock");
    wait_until("the rollup holds the store", Duration::from_secs(30), || {
        std::fs::File::open(&lock).is_ok_and(|f| f.try_lock_shared().is_err())
    })
    .await;
    hub.operations.push(late_operation());
    let dry = jointops::rollup::replay::replay(&hub, Some("unknown-operation"), true).await.unwrap();
    assert_eq!(dry.replayed.len(), 4);
    assert!(dry.rollup_running, "the running rollup is noticed");
    old.stop().await;
    let dry = jointops::rollup::replay::replay(&hub, Some("unknown-operation"), true).await.unwrap();
    assert!(!dry.rollup_running);
    let outcome = jointops::rollup::replay::replay(&hub, Some("unknown-operation"), false).await.unwrap();
    assert_eq!(outcome.replayed.len(), 4);
    assert!(outcome.still_refused.is_empty(), "filtered by reason: {:?}", outcome.still_refused);
    // Twice is harmless: replayed records are not sent again.
    assert!(jointops::rollup::replay::replay(&hub, None, false).await.unwrap().replayed.is_empty());

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    assert_eq!(totals(&hub, "LATE-1").joint.arrests, 4);
    let store = SqliteStore::open_read(&hub.store.path).unwrap();
    assert_eq!(store.dead_letter_counts().unwrap().get("unknown-operation"), None, "no longer outstanding");
    assert_eq!(store.dead_letter_counts().unwrap().get("undecodable"), Some(&1));
    assert_eq!(store.dead_letters(Some("unknown-operation")).unwrap().iter().filter(|d| d.replayed).count(), 4);
}
