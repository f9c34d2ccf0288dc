//! `agent watch` in-process on the real broker: files renamed into the inbox
//! are published in name order, moved to done/ or failed/ with receipts, and
//! a file accepted before a stop is finished with its first receipt.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use jointops::agent::ledger::Ledger;
use serde_json::{json, Value};

const OP: &str = "OP-WATCH";
const SECRET: &str = "watch-secret";

fn receipt(inbox: &Path, folder: &str, name: &str) -> Value {
    read_json(&inbox.join(folder).join(format!("{name}.receipt.json")))
}

/// The receipt without its clock, checking that the clock is RFC 3339.
fn numbers(mut r: Value) -> Value {
    let at = r.as_object_mut().unwrap().remove("finished_at").expect("finished_at");
    chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap()).expect("finished_at is RFC 3339");
    r
}

fn remaining(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn engagement(id: &str, people: u32) -> String {
    format!(
        r#"{{"record_id":"{id}","kind":"engagement","operation":"{OP}","occurred_at":"2023-10-10T12:00:00Z","people":{people}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_publishes_inbox_files_in_name_order_with_receipts() {
    let (dir, hub, settings, inbox) =
        watched(vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)], "MPS").await;

    // Files still being written, or hidden: never touched.
    for name in [".hidden.csv", "x.csv.tmp", "y.jsonl.part"] {
        std::fs::write(inbox.join(name), "record_id\n").unwrap();
    }
    // Present before the start: taken in name order, so b revises what a says.
    let a = synthetic_export(OP, 50, 0);
    drop_file(&inbox, "a-clean.csv", &a.csv);
    let b = [
        engagement("R1", 40),                                                                            // revision
        r#"{"record_id":"R2","kind":"engagement","operation":"OP-WATCH","occurred_at":"2023-10-10T12:00:00Z","people":14,"withdrawn":true}"#.into(), // withdrawal
        r#"{"record_id":"R3","kind":"engagement","operation":"OP-WATCH","occurred_at":"2023-10-13T03:03:00Z","people":40}"#.into(), // unchanged
        engagement("N1", 7),
        r#"{"record_id":"N2","kind":"arrest","operation":"OP-WATCH","occurred_at":"2023-10-11T09:00:00Z","offence_group":"WEAPONS"}"#.into(),
        r#"{"record_id":"N3","kind":"burglary","operation":"OP-WATCH","occurred_at":"2023-10-11T09:00:00Z"}"#.into(),
        r#"{"kind":"engagement","operation":"OP-WATCH","occurred_at":"2023-10-11T09:00:00Z","people":3}"#.into(),
        r#"{"record_id":"N4","kind":"engagement","operation":"OP-ELSEWHERE","occurred_at":"2023-10-11T09:00:00Z","people":3}"#.into(),
    ]
    .join("\n");
    drop_file(&inbox, "b-mixed.jsonl", &b);
    drop_file(&inbox, "c-unreadable.csv", "record_id,kind,colour\nR9,arrest,blue\n");
    drop_file(&inbox, "d-notes.txt", "not an export\n");
    // No header row: the raw reference on line 1 never reaches the receipt.
    drop_file(&inbox, "c2-headerless.csv", "R7,line_closure,OP-WATCH,2023-10-10T10:00:00Z,07700 900123\n");

    let started = Instant::now();
    let w = RunningWatcher::start(&settings, &inbox);
    let done = |name: &str| inbox.join("done").join(format!("{name}.receipt.json")).exists();
    let failed = |name: &str| inbox.join("failed").join(format!("{name}.receipt.json")).exists();
    wait_until("the first four files handled", Duration::from_secs(60), || {
        done("a-clean.csv")
            && done("b-mixed.jsonl")
            && failed("c-unreadable.csv")
            && failed("c2-headerless.csv")
            && failed("d-notes.txt")
    })
    .await;
    // One more, while it runs.
    drop_file(&inbox, "e-late.jsonl", &engagement("L1", 11));
    wait_until("the late file handled", Duration::from_secs(30), || done("e-late.jsonl")).await;
    let took = started.elapsed();

    let a_people = a.people_engaged;
    assert_eq!(
        numbers(receipt(&inbox, "done", "a-clean.csv")),
        json!({"file": "a-clean.csv", "published": 50, "unchanged": 0, "withdrawn": 0, "rejected": 0, "rejections": []})
    );
    let b_receipt = numbers(receipt(&inbox, "done", "b-mixed.jsonl"));
    let reasons: Vec<&str> =
        b_receipt["rejections"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(
        b_receipt,
        json!({"file": "b-mixed.jsonl", "published": 4, "unchanged": 1, "withdrawn": 1, "rejected": 3, "rejections": [
            {"line": 6, "reason": reasons[0]}, {"line": 7, "reason": reasons[1]}, {"line": 8, "reason": reasons[2]}]}),
    );
    assert!(reasons[0].contains("burglary") && reasons[1].contains("record_id"), "{reasons:?}");
    assert!(reasons[2].contains("OP-ELSEWHERE") && reasons[2].contains("not configured"), "{reasons:?}");
    for (name, says) in [
        // Unknown columns are ignored (with a note); a missing required one spoils the file.
        ("c-unreadable.csv", "the required column operation is missing"),
        ("c2-headerless.csv", "line 1 is not a header row"),
        ("d-notes.txt", "is not a .jsonl"),
    ] {
        let r = numbers(receipt(&inbox, "failed", name));
        assert_eq!(r["file"], name);
        assert!(r["error"].as_str().unwrap().contains(says), "{name}: {r}");
        assert_eq!(r.as_object().unwrap().len(), 2, "{name}: only file and error (and finished_at): {r}");
        assert!(!r.to_string().contains("07700"), "{name}: a raw reference in the receipt: {r}");
    }
    assert_eq!(
        remaining(&inbox.join("done")),
        [
            "a-clean.csv",
            "a-clean.csv.receipt.json",
            "b-mixed.jsonl",
            "b-mixed.jsonl.receipt.json",
            "e-late.jsonl",
            "e-late.jsonl.receipt.json"
        ]
    );
    assert_eq!(
        remaining(&inbox.join("failed")),
        [
            "c-unreadable.csv",
            "c-unreadable.csv.receipt.json",
            "c2-headerless.csv",
            "c2-headerless.csv.receipt.json",
            "d-notes.txt",
            "d-notes.txt.receipt.json"
        ]
    );
    assert_eq!(remaining(&inbox), [".hidden.csv", "x.csv.tmp", "y.jsonl.part"]);
    assert_eq!(std::fs::read_to_string(inbox.join("done/a-clean.csv")).unwrap(), a.csv, "moved, not rewritten");

    let stats = w.stop().await;
    assert_eq!((stats.done, stats.failed, stats.outbox, stats.delivered), (3, 3, 0, 55));
    // Regression: the ledger and its outbox were readable by every account (0644).
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let state = dir.path().join("state");
    assert_eq!(mode(&state), 0o700);
    for entry in std::fs::read_dir(&state).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert!(stats.accepted.is_empty());

    // What the hub counts: a's rows, R1 now 40 people (was 14), R2 withdrawn
    // (was 27), and N1, N2 and L1 added.
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    let totals = totals(&hub, OP).joint;
    assert_eq!(totals.people_engaged, a_people - 14 + 40 - 27 + 7 + 11);
    assert_eq!(totals.arrests, a.arrests + 1);
    assert!(dead_letters(&hub).is_empty(), "{:?}", dead_letters(&hub));
    eprintln!("watch: 5 files handled in {took:?}");
}

/// A hub with these operations and its topics, an agent of `force` with
/// its state folder, and an empty inbox, all in a fresh folder.
async fn watched(
    operations: Vec<jointops::config::OperationSettings>,
    force: &str,
) -> (tempfile::TempDir, jointops::config::HubSettings, jointops::config::AgentSettings, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), operations);
    create_topics(&hub).await;
    let settings = agent(&hub, force, dir.path().join("state"), &[(OP, SECRET)]);
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    (dir, hub, settings, inbox)
}

/// The same agent with a broker address where nothing answers.
fn unreachable(good: &jointops::config::AgentSettings) -> jointops::config::AgentSettings {
    let mut down = good.clone();
    down.kafka.bootstrap = "127.0.0.1:1".into();
    down.kafka.librdkafka.insert("message.timeout.ms".into(), "1000".into());
    down
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_accepted_before_a_stop_is_finished_with_its_first_receipt() {
    let (_dir, hub, good, inbox) = watched(vec![], "KENT").await;
    // First run: nothing answers, so the file is accepted but not delivered.
    let down = unreachable(&good);
    let export = synthetic_export(OP, 120, 0);
    drop_file(&inbox, "export.csv", &export.csv);

    let w = RunningWatcher::start(&down, &inbox);
    let mut status = w.status.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.accepted == ["export.csv"] && s.outbox == 120 && s.failed_attempts >= 1),
    )
    .await
    .expect("accepted, and a delivery attempt failed")
    .unwrap();
    let stopping = Instant::now();
    let stats = w.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(10), "a stop waits at most the grace: {:?}", stopping.elapsed());
    assert_eq!((stats.done, stats.outbox), (0, 120));
    assert!(inbox.join("export.csv").exists(), "left in the inbox for the next start");
    assert!(!inbox.join("done/export.csv.receipt.json").exists());
    {
        let ledger = Ledger::open(&good.state_dir).unwrap();
        assert_eq!(ledger.pending().unwrap().len(), 120, "kept in the outbox");
    }

    // Next start, broker reachable: the outbox goes out, and the receipt is
    // the one the first attempt would have written (planning the file again
    // would have found all 120 rows unchanged).
    let w = RunningWatcher::start(&good, &inbox);
    wait_until("the receipt", Duration::from_secs(60), || inbox.join("done/export.csv.receipt.json").exists()).await;
    let stats = w.stop().await;
    assert_eq!((stats.done, stats.outbox, stats.delivered), (1, 0, 120));
    assert_eq!(
        numbers(receipt(&inbox, "done", "export.csv")),
        json!({"file": "export.csv", "published": 120, "unchanged": 0, "withdrawn": 0, "rejected": 0, "rejections": []})
    );
    assert!(Ledger::open(&good.state_dir).unwrap().pending().unwrap().is_empty());
    let events = consume_events(&hub.kafka.bootstrap, &hub.kafka.topic);
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| (e.event_id.clone(), e.revision)).collect();
    assert_eq!(ids.len(), 120, "every row once, as revision 1");

    // The same bytes again, under the same name: a new drop, planned afresh.
    drop_file(&inbox, "export.csv", &export.csv);
    let w = RunningWatcher::start(&good, &inbox);
    wait_until("the second receipt", Duration::from_secs(30), || inbox.join("done/export~2.csv.receipt.json").exists())
        .await;
    w.stop().await;
    assert_eq!(
        numbers(receipt(&inbox, "done", "export~2.csv")),
        json!({"file": "export.csv", "published": 0, "unchanged": 120, "withdrawn": 0, "rejected": 0, "rejections": []})
    );
}

/// Regression: a file written in place in two parts was read between them:
/// its first row went out, the cut one was rejected, the file moved to
/// `done/` and the writer's last row was never sent nor reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_place_in_two_parts_is_taken_whole() {
    use std::io::Write;
    let (_dir, hub, settings, inbox) = watched(vec![], "MPS").await;
    let (first, second, third) = (engagement("W1", 3), engagement("W2", 4), engagement("W3", 5));
    let (head, tail) = second.split_at(second.len() / 2);

    let mut writer = std::fs::File::create(inbox.join("export.jsonl")).unwrap();
    writer.write_all(format!("{first}\n{head}").as_bytes()).unwrap();
    let w = RunningWatcher::start(&settings, &inbox);
    // The export job's own pause, longer than the settle interval: only the
    // open file says it is not finished.
    tokio::time::sleep(Duration::from_millis(3 * settings.watch.settle_ms + 500)).await;
    assert!(inbox.join("export.jsonl").exists(), "taken while still being written");
    writer.write_all(format!("{tail}\n{third}\n").as_bytes()).unwrap();
    drop(writer);

    wait_until("the receipt", Duration::from_secs(30), || inbox.join("done/export.jsonl.receipt.json").exists()).await;
    let stats = w.stop().await;
    assert_eq!(
        numbers(receipt(&inbox, "done", "export.jsonl")),
        json!({"file": "export.jsonl", "published": 3, "unchanged": 0, "withdrawn": 0, "rejected": 0, "rejections": []})
    );
    assert_eq!((stats.done, stats.failed, stats.delivered), (1, 0, 3));
    let mut ids: Vec<String> =
        consume_events(&hub.kafka.bootstrap, &hub.kafka.topic).into_iter().map(|e| e.event_id).collect();
    ids.sort();
    assert_eq!(ids, ["W1", "W2", "W3"]);
}

/// Regression: a file that changed after it was read was read again as a
/// new file (or, had its messages gone out first, moved to `done/` with the
/// change in it), and no receipt said that what was published is not what
/// the file now holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_after_it_was_read_goes_to_failed_with_what_its_read_published() {
    let (_dir, hub, good, inbox) = watched(vec![], "KENT").await;
    let down = unreachable(&good);
    let read = format!("{}\n{}\n", engagement("C1", 3), engagement("C2", 4));
    drop_file(&inbox, "export.jsonl", &read);

    // Read and accepted, not delivered; then the file grows in place.
    let mut w = RunningWatcher::start(&down, &inbox);
    w.wait_for("accepted", Duration::from_secs(30), |s| s.accepted == ["export.jsonl"]).await;
    w.stop().await;
    let grown = format!("{read}{}\n", engagement("C3", 5));
    std::fs::write(inbox.join("export.jsonl"), &grown).unwrap();

    let w = RunningWatcher::start(&good, &inbox);
    wait_until("the failed receipt", Duration::from_secs(30), || {
        inbox.join("failed/export.jsonl.receipt.json").exists()
    })
    .await;
    let stats = w.stop().await;
    let r = numbers(receipt(&inbox, "failed", "export.jsonl"));
    assert!(r["error"].as_str().unwrap().contains("changed after it was read"), "{r}");
    assert_eq!(r["read"]["published"], 2, "{r}");
    assert_eq!(std::fs::read_to_string(inbox.join("failed/export.jsonl")).unwrap(), grown);
    assert_eq!(remaining(&inbox), Vec::<String>::new());
    assert_eq!(remaining(&inbox.join("done")), Vec::<String>::new());
    assert_eq!((stats.done, stats.failed, stats.delivered), (0, 1, 2));
    let mut ids: Vec<String> =
        consume_events(&hub.kafka.bootstrap, &hub.kafka.topic).into_iter().map(|e| e.event_id).collect();
    ids.sort();
    assert_eq!(ids, ["C1", "C2"], "what was read is delivered, and nothing else");
}

/// Regression: a line number whose leading 0 a spreadsheet had stripped was
/// published without a word, and never met the partner force's report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_number_without_its_leading_zero_is_published_and_flagged_in_the_receipt() {
    let (_dir, hub, settings, inbox) = watched(vec![], "MPS").await;
    let csv = format!(
        "record_id,kind,operation,occurred_at,joint_ref\n\
         L1,line_closure,{OP},2023-10-10T10:00:00Z,07700 900123\n\
         L2,line_closure,{OP},2023-10-10T10:00:00Z,7700900124\n"
    );
    drop_file(&inbox, "lines.csv", &csv);
    let w = RunningWatcher::start(&settings, &inbox);
    wait_until("the receipt", Duration::from_secs(30), || inbox.join("done/lines.csv.receipt.json").exists()).await;
    w.stop().await;
    let r = numbers(receipt(&inbox, "done", "lines.csv"));
    assert_eq!((r["published"].as_u64(), r["rejected"].as_u64()), (Some(2), Some(0)), "{r}");
    let warnings = r["warnings"].as_array().unwrap_or_else(|| panic!("no warnings: {r}"));
    assert_eq!(warnings.len(), 1, "{r}");
    assert_eq!(warnings[0]["line"], 3, "{r}");
    let text = warnings[0]["warning"].as_str().unwrap();
    assert!(text.contains("no leading 0") && text.contains("will not meet"), "{text}");
    assert!(!r.to_string().contains("7700900124"), "the raw number stays out of the receipt: {r}");
    assert_eq!(consume_events(&hub.kafka.bootstrap, &hub.kafka.topic).len(), 2, "both published");
}
