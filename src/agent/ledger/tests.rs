use super::*;

/// Regression: `publish` while `watch` ran on the same folder failed
/// with SQLite's bare "database is locked".
#[test]
fn a_second_agent_on_one_state_folder_is_told_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ledger::open(dir.path()).unwrap();
    let e = Ledger::open(dir.path()).err().expect("refused while the first is open").to_string();
    assert!(e.contains("another agent") && e.contains("agent.lock"), "{e}");
    drop(first);
    assert!(Ledger::open(dir.path()).is_ok(), "free again once the first has gone");
}

fn entry(id: &str) -> Entry {
    Entry { record_id: id.into(), event_id: id.into(), generation: 1, revision: 1, reported_at: 5, content: vec![1] }
}

fn messages(ids: &[&str]) -> Vec<(String, Vec<u8>)> {
    ids.iter().map(|id| (format!("OP/MPS/{id}"), id.as_bytes().to_vec())).collect()
}

fn seqs(ledger: &Ledger) -> Vec<i64> {
    ledger.pending().unwrap().iter().map(|m| m.seq).collect()
}

#[test]
fn a_plan_over_the_spool_limit_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path()).unwrap();
    ledger.accept("a.csv", &[entry("a"), entry("b")], &messages(&["a", "b"]), None, 3).unwrap();
    let e = ledger.accept("c.csv", &[entry("c"), entry("d")], &messages(&["c", "d"]), None, 3).unwrap_err();
    assert!(matches!(e, LedgerError::SpoolFull { limit: 3, current: 2, adding: 2, .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("c.csv") && text.contains(&dir.path().canonicalize().unwrap().display().to_string()));
    assert_eq!((ledger.records_len().unwrap(), ledger.outbox_len().unwrap()), (2, 2));
    assert!(ledger.get("c").unwrap().is_none());
    // Nothing to add always fits, even into a full outbox.
    ledger.accept("d.csv", &[], &[], None, 2).unwrap();
}

#[test]
fn a_run_is_delivered_once_its_own_messages_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path()).unwrap();
    ledger.record(&[entry("x")], &messages(&["x"])).unwrap();
    let run = NewRun { source: "/in/a.csv", sha256: "ab", summary: "{}", planned_at: 1 };
    let id = ledger.accept("a.csv", &[entry("a")], &messages(&["a", "b"]), Some(run), 10).unwrap().unwrap();
    let runs = ledger.open_runs().unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let all = seqs(&ledger);
    assert_eq!((run.id, run.first_seq, run.last_seq, run.dest.as_deref()), (id, Some(all[1]), Some(all[2]), None));
    ledger.acknowledge(&all[1..]).unwrap();
    assert!(ledger.delivered(run).unwrap(), "the earlier message does not hold it back");
    ledger.set_dest(id, "/in/done/a.csv").unwrap();
    assert_eq!(ledger.open_runs().unwrap()[0].dest.as_deref(), Some("/in/done/a.csv"));
    ledger.close_run(id, RunState::Finished, 2).unwrap();
    assert!(ledger.open_runs().unwrap().is_empty());
    assert_eq!(ledger.pending_after(0, 10).unwrap().len(), 1);
}

#[test]
fn a_batch_acknowledged_in_part_keeps_the_rest_and_their_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path()).unwrap();
    let ids: Vec<String> = (0..BATCH + 3).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    ledger.record(&[], &messages(&refs)).unwrap();
    let all = seqs(&ledger);
    assert_eq!(all.len(), BATCH + 3);
    assert_eq!(ledger.pending_after(0, 10).unwrap().len(), BATCH, "whole batches, oldest first");
    // Every other message of the first batch, and the second batch whole.
    let acked: Vec<i64> =
        all.iter().copied().enumerate().filter(|(i, _)| *i >= BATCH || i % 2 == 0).map(|x| x.1).collect();
    assert_eq!(ledger.acknowledge(&acked).unwrap(), acked.len() as u64);
    let left = ledger.pending().unwrap();
    assert_eq!(left.len(), BATCH / 2);
    assert_eq!(left[0].seq, all[1]);
    assert_eq!(left[0].key, "OP/MPS/r1");
    assert_eq!(ledger.outbox_len().unwrap(), (BATCH / 2) as u64);
    assert_eq!(ledger.acknowledge(&acked).unwrap(), 0, "an acknowledgement twice forgets nothing more");
    assert!(ledger.pending_after(all[3], usize::MAX).unwrap().is_empty(), "nothing after the first batch");
}

#[test]
fn entries_replace_their_earlier_selves_and_say_which_operations_they_publish() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path()).unwrap();
    ledger.record(&[entry("a"), entry("b")], &messages(&["a"])).unwrap();
    let newer = Entry { revision: 9, generation: 2, event_id: "a:2".into(), ..entry("a") };
    ledger.record(std::slice::from_ref(&newer), &[]).unwrap();
    let found = ledger.lookup(&["a", "zzz", "b", "a"]).unwrap();
    let found: Vec<Option<Entry>> = found.into_iter().map(|e| e.map(|e| *e)).collect();
    assert_eq!(
        found,
        [Some(newer.clone()), None, Some(entry("b")), Some(newer)],
        "in the order asked, twice if asked twice"
    );
    assert_eq!(ledger.records_len().unwrap(), 2);
    assert!(ledger.knows_operation("OP").unwrap());
    assert!(!ledger.knows_operation("OP2").unwrap() && !ledger.knows_operation("O").unwrap());
}

#[test]
fn a_damaged_bucket_is_named_never_read_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path()).unwrap();
    ledger.record(&[entry("a")], &[]).unwrap();
    ledger.conn.execute("UPDATE buckets SET records = x'0105'", []).unwrap();
    let e = ledger.get("a").unwrap_err().to_string();
    assert!(e.contains("record bucket") && e.contains("damaged"), "{e}");
}

/// A ledger of the first layout (a row per record and per message) keeps
/// its records, its outbox and its open runs when the agent is upgraded.
#[test]
fn a_first_layout_ledger_is_converted_with_its_outbox_and_runs() {
    use crate::domain::{ArrestOffence, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let event = OutcomeEvent {
        event_id: "a:2".into(),
        revision: 7,
        force: "MPS".into(),
        operation: "OP".into(),
        occurred_at: 1_696_900_000_000,
        reported_at: 1_697_000_000_000,
        withdrawn: false,
        joint_ref: None,
        outcome: Outcome::Arrest { offence_group: ArrestOffence::Other },
    };
    let value = Registry::builtin().encode(&event);
    let blank = OutcomeEvent { event_id: String::new(), revision: 0, reported_at: 0, ..event.clone() };
    let mut content = Vec::new();
    binary::encode(&blank, &mut content);
    {
        let conn = Connection::open(dir.path().join("ledger.sqlite")).unwrap();
        conn.execute_batch(
            "CREATE TABLE records (record_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, generation INTEGER NOT NULL,
                 revision INTEGER NOT NULL, identity TEXT NOT NULL, content BLOB NOT NULL,
                 withdrawn INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, value BLOB NOT NULL);
             CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, sha256 TEXT NOT NULL,
                 summary TEXT NOT NULL, first_seq INTEGER, last_seq INTEGER, dest TEXT,
                 state TEXT NOT NULL, planned_at INTEGER NOT NULL, finished_at INTEGER);",
        )
        .unwrap();
        conn.execute("INSERT INTO records VALUES ('a', 'a:2', 2, 7, 'OP/MPS/a:2', ?1, 0, ?2)", params![content, value])
            .unwrap();
        for (seq, key) in [(4, "OP/MPS/a"), (5, "OP/MPS/a:2"), (9, "OP/MPS/z")] {
            conn.execute("INSERT INTO outbox VALUES (?1, ?2, x'00')", params![seq, key]).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO runs VALUES (1, 'x.csv', 'ab', '{}', 1, 3, NULL, 'planned', 1, NULL);
             INSERT INTO runs VALUES (2, 'y.csv', 'cd', '{}', 4, 5, NULL, 'planned', 1, NULL);
             INSERT INTO runs VALUES (3, 'z.csv', 'ef', '{}', 9, 9, NULL, 'finished', 1, 2);",
        )
        .unwrap();
    }
    let mut ledger = Ledger::open(dir.path()).unwrap();
    let a = ledger.get("a").unwrap().expect("kept");
    assert_eq!(a.event().unwrap(), event);
    assert_eq!(Registry::builtin().encode(&a.event().unwrap()), value, "the same bytes to resend");
    assert!(ledger.knows_operation("OP").unwrap());
    let keys: Vec<String> = ledger.pending().unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["OP/MPS/a", "OP/MPS/a:2", "OP/MPS/z"]);
    let runs = ledger.open_runs().unwrap();
    assert!(ledger.delivered(&runs[0]).unwrap(), "run 1's messages were all acknowledged before");
    assert!(!ledger.delivered(&runs[1]).unwrap(), "run 2's are still in the outbox");
    let s = seqs(&ledger);
    ledger.acknowledge(&s[..2]).unwrap();
    assert!(ledger.delivered(&runs[1]).unwrap());
    drop(ledger);
    assert_eq!(Ledger::open(dir.path()).unwrap().outbox_len().unwrap(), 1, "converted once");
}
