//! An agent whose ledger is lost (or new) on the real broker, with the hub
//! counting: revisions follow the publication time, so what it publishes
//! goes above what the hub holds.

mod common;

use std::time::Duration;

use common::*;

const OP: &str = "OP-LOST";

fn engagement(people: u32) -> String {
    format!(
        r#"{{"record_id":"R1","kind":"engagement","operation":"{OP}","occurred_at":"2023-10-10T12:00:00Z","people":{people}}}"#
    )
}

/// Regression: a fresh or lost ledger published revision 1 of a row that an
/// earlier ledger had published with other content; the hub dead-lettered
/// it as `conflicting-revision` (or, under a revision 2, ignored it) while
/// the agent reported success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ledger_publishes_above_the_revisions_the_hub_holds_instead_of_conflicting() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    create_topics(&hub).await;
    let file = dir.path().join("export.jsonl");
    let mut settings = agent(&hub, "MPS", dir.path().join("state"), &[(OP, "s")]);
    settings.operations.values_mut().for_each(|o| o.starts = Some(1_696_118_400_000)); // 2023-10-01
    for people in [4, 5] {
        std::fs::write(&file, engagement(people)).unwrap();
        let s = jointops::agent::publish_files(&settings, std::slice::from_ref(&file), false).await.unwrap();
        assert_eq!(s.total().published, 1);
    }
    let first = consume_events(&hub.kafka.bootstrap, &hub.kafka.topic);
    let last = first.iter().map(|e| e.revision).max().unwrap();
    // A revision is a second: the lost ledger's first publication must not
    // fall in the same second as the last one.
    let second = |ms: i64| ms / 1000 - 1_577_836_800;
    wait_until("the clock to pass the last revision", Duration::from_secs(5), || {
        second(chrono::Utc::now().timestamp_millis()) > i64::from(last)
    })
    .await;

    // The ledger is lost: a new state folder, the same force.
    settings.state_dir = dir.path().join("state-new");
    std::fs::write(&file, engagement(6)).unwrap();
    let s = jointops::agent::publish_files(&settings, std::slice::from_ref(&file), false).await.unwrap();
    let f = &s.files[0];
    assert_eq!(f.published, 1);
    assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
    let w = &f.warnings[0].warning;
    assert!(w.contains("OP-LOST started at 2023-10-01T00:00:00.000Z") && w.contains("has published nothing"), "{w}");

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    assert!(dead_letters(&hub).is_empty(), "{:?}", dead_letters(&hub));
    assert_eq!(totals(&hub, OP).joint.people_engaged, 6, "the lost ledger's row is the report's state");
    let revisions: Vec<i32> =
        consume_events(&hub.kafka.bootstrap, &hub.kafka.topic).iter().map(|e| e.revision).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
}
