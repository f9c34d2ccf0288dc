//! Rows the hub would certainly refuse are rejected by the agent, with their
//! line, on the real broker with the hub counting: nothing is dead-lettered.

mod common;

use std::time::Duration;

use common::*;

const OP: &str = "OP-REFUSE";

fn row(id: &str, at: chrono::DateTime<chrono::Utc>) -> String {
    let at = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(r#"{{"record_id":"{id}","kind":"engagement","operation":"{OP}","occurred_at":"{at}","people":2}}"#)
}

/// Regression: rows too far ahead, outside the operation's window or from a
/// force not taking part were published and dead-lettered by the hub while
/// the agent reported success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_the_hub_would_refuse_are_rejected_by_the_agent_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now();
    let (starts, ends) = (now - chrono::Duration::days(10), now + chrono::Duration::days(10));
    let rfc = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let hub = hub(dir.path(), vec![operation(OP, &rfc(starts), &rfc(ends), Some(&["KENT"]))]);
    create_topics(&hub).await;
    let configured = |force: &str| {
        let mut s = agent(&hub, force, dir.path().join(force), &[(OP, "s")]);
        for o in s.operations.values_mut() {
            (o.starts, o.ends) = (Some(starts.timestamp_millis()), Some(ends.timestamp_millis()));
            o.forces = Some(["KENT".to_string()].into());
        }
        s
    };
    let file = dir.path().join("export.jsonl");
    let rows = [
        row("K1", now - chrono::Duration::days(1)),
        row("K2", now + chrono::Duration::days(2)),
        row("K3", now - chrono::Duration::days(20)),
    ];
    std::fs::write(&file, rows.join("\n")).unwrap();
    let s = jointops::agent::publish_files(&configured("KENT"), std::slice::from_ref(&file), false).await.unwrap();
    let f = &s.files[0];
    assert_eq!((f.published, f.rejected), (1, 2), "{f:?}");
    assert_eq!((f.rejections[0].line, f.rejections[1].line), (2, 3));
    let (future, outside) = (&f.rejections[0].reason, &f.rejections[1].reason);
    assert!(future.contains("is more than 24 h after now") && future.contains('T'), "{future}");
    assert!(outside.contains(&format!("outside {OP}'s window [{}, {})", rfc(starts), rfc(ends))), "{outside}");

    std::fs::write(&file, &rows[0]).unwrap();
    let s = jointops::agent::publish_files(&configured("MPS"), std::slice::from_ref(&file), false).await.unwrap();
    let f = &s.files[0];
    assert_eq!((f.published, f.rejected, f.rejections[0].line), (0, 1, 1), "{f:?}");
    assert!(f.rejections[0].reason.contains("force MPS is not taking part in OP-REFUSE"), "{f:?}");

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    assert!(dead_letters(&hub).is_empty(), "{:?}", dead_letters(&hub));
    assert_eq!(totals(&hub, OP).joint.people_engaged, 2);
}
