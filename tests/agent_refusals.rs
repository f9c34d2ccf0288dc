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

/// `agent publish` on the command line says its warnings on stderr, with the
/// file and line, and counts them under the table: a ledger new to an
/// operation that has started, and a line number without its leading 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_says_its_warnings_on_stderr_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![]);
    create_topics(&hub).await;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "force = \"MPS\"\nstate_dir = \"state\"\n[kafka]\nbootstrap = \"{}\"\ntopic = \"{}\"\n\
             [operations.op_refuse]\nid = \"{OP}\"\nstarts = \"2023-10-01T00:00:00Z\"\n",
            hub.kafka.bootstrap, hub.kafka.topic
        ),
    )
    .unwrap();
    let file = dir.path().join("lines.csv");
    std::fs::write(
        &file,
        format!(
            "record_id,kind,operation,occurred_at,joint_ref\nL1,line_closure,{OP},2023-10-10T10:00:00Z,7700900123\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["agent", "publish", "--no-progress", "--config"])
        .arg(&config)
        .arg(&file)
        .env("JOINTOPS__OPERATIONS__OP_REFUSE__SECRET", "s")
        .output()
        .expect("the jointops binary runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let shown = file.display().to_string();
    assert!(
        stderr.contains(&format!("{shown}: warning: operation {OP} started at 2023-10-01T00:00:00.000Z")),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{shown}:2: warning: joint_ref: the line_closure number")), "{stderr}");
    assert!(!stderr.contains("7700900123"), "the raw number stays out: {stderr}");
    assert!(stdout.contains("(2 warnings, listed on stderr"), "{stdout}");
}
