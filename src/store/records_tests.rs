use super::*;
use crate::access::{hash_token, new_token, token_id};

fn kent(hash: &[u8; 32]) -> Grant {
    Grant {
        id: token_id(hash),
        role: Role::Force("KENT".into()),
        operations: Some(vec!["OP-1".into()]),
        label: "Kent liaison".into(),
        created_at: 1,
        revoked_at: None,
    }
}

fn entry(i: i64) -> Access {
    Access {
        seq: 0,
        at: 10 + i,
        token_id: Some("abc".into()),
        role: Some("force:KENT".into()),
        method: "GET".into(),
        path: format!("/api/v1/operations/OP-1/totals?n={i}"),
        operation: Some("OP-1".into()),
        status: 200,
        justification: Some("press briefing".into()),
        figures_at: None,
    }
}

fn open(dir: &tempfile::TempDir) -> RecordsStore {
    RecordsStore::open(&dir.path().join("s.records"), None).unwrap()
}

#[test]
fn tokens_are_found_by_hash_until_revoked_and_the_log_cannot_be_changed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let (token, hash) = new_token();
    let g = kent(&hash);
    s.add_token(&hash, &g).unwrap();
    assert_eq!(s.find_token(&hash_token(&token)).unwrap(), Some(g.clone()));
    assert_eq!(s.find_token(&hash_token("jo_wrong")).unwrap(), None);
    assert!(s.token_active(&g.id).unwrap());
    assert!(s.revoke_token(&g.id, 5).unwrap());
    assert_eq!(s.find_token(&hash).unwrap(), None);
    assert!(!s.token_active(&g.id).unwrap());

    s.log_access(&entry(0)).unwrap();
    assert_eq!(s.access_log(0).unwrap(), vec![Access { seq: 1, ..entry(0) }]);
    let tamper = s.execute_raw("UPDATE access_log SET status = 500");
    assert!(tamper.unwrap_err().to_string().contains("append-only"));
    assert!(s.execute_raw("DELETE FROM access_log").is_err());
    assert_eq!(s.access_log(0).unwrap().len(), 1);
}

/// Regression: the triggers refused UPDATE and DELETE, but `INSERT OR
/// REPLACE` with an existing seq rewrote an entry (REPLACE deletes without
/// firing delete triggers).
#[test]
fn insert_or_replace_cannot_rewrite_an_access_log_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.log_access(&entry(0)).unwrap();
    s.log_access(&entry(1)).unwrap();
    let replace = s.execute_raw(
        "INSERT OR REPLACE INTO access_log (seq, at, method, path, status, prev_hash, hash)
         VALUES (1, 0, 'GET', '/nothing-to-see', 200, x'00', x'00')",
    );
    assert!(replace.unwrap_err().to_string().contains("append-only"));
    assert_eq!(s.access_log(0).unwrap()[0], Access { seq: 1, ..entry(0) });
    assert_eq!(s.verify_chain().unwrap().first_bad, None);
}

#[test]
fn audit_verify_names_the_first_entry_changed_behind_the_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    for i in 0..5 {
        s.log_access(&entry(i)).unwrap();
    }
    let good = s.verify_chain().unwrap();
    assert_eq!((good.entries, good.first_bad), (5, None));
    // An intruder with the file drops the triggers and edits entry 3.
    s.execute_raw("DROP TRIGGER access_log_no_update").unwrap();
    s.execute_raw("UPDATE access_log SET justification = 'nothing' WHERE seq = 3").unwrap();
    assert_eq!(s.verify_chain().unwrap().first_bad.map(|b| b.0), Some(3));
    // Deleting an entry breaks the link of the next one.
    let dir2 = tempfile::tempdir().unwrap();
    let mut s = open(&dir2);
    for i in 0..5 {
        s.log_access(&entry(i)).unwrap();
    }
    s.execute_raw("DROP TRIGGER access_log_no_delete").unwrap();
    s.execute_raw("DELETE FROM access_log WHERE seq = 2").unwrap();
    let bad = s.verify_chain().unwrap().first_bad.unwrap();
    assert_eq!(bad.0, 3, "{bad:?}");
}

/// Regression: `operations.and_then(|o| from_str(&o).ok())` turned an
/// unreadable operation list into `None`, which means every operation.
#[test]
fn a_token_whose_operation_list_cannot_be_read_grants_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let (_, hash) = new_token();
    s.add_token(&hash, &kent(&hash)).unwrap();
    s.execute_raw("UPDATE tokens SET operations = '[\"OP-1\"' ").unwrap();
    let g = s.find_token(&hash).unwrap().unwrap();
    assert_eq!(g.operations, Some(vec![]));
    assert!(!g.may_see_operation("OP-1", None) && !g.may_see_operation("OP-2", None));
}

/// A store as the first version left it: its tokens table with one
/// coordinator token, then `access_log` (the table under test).
fn old_store(dir: &tempfile::TempDir, access_log: &str) -> std::path::PathBuf {
    let old = dir.path().join("hub.sqlite");
    let c = Connection::open(&old).unwrap();
    c.execute_batch(
        "CREATE TABLE tokens (id TEXT PRIMARY KEY, hash BLOB NOT NULL UNIQUE, role TEXT NOT NULL, operations TEXT,
             label TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER);
         INSERT INTO tokens VALUES ('t1', x'01', 'coordinator', NULL, 'c', 1, NULL);",
    )
    .unwrap();
    c.execute_batch(access_log).unwrap();
    old
}

#[test]
fn tokens_and_the_access_log_of_an_old_store_are_carried_over_once() {
    let dir = tempfile::tempdir().unwrap();
    let old = old_store(
        &dir,
        "CREATE TABLE access_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, token_id TEXT, role TEXT,
             method TEXT NOT NULL, path TEXT NOT NULL, operation TEXT, status INTEGER NOT NULL, justification TEXT);
         INSERT INTO access_log (at, method, path, status) VALUES (5, 'GET', '/api/v1/operations', 200);",
    );
    let records = dir.path().join("hub.sqlite.records");
    let s = RecordsStore::open(&records, Some(&old)).unwrap();
    assert_eq!(s.tokens().unwrap().len(), 1);
    assert_eq!(s.access_log(0).unwrap().len(), 1);
    assert_eq!(s.verify_chain().unwrap().first_bad, None);
    drop(s);
    let s = RecordsStore::open(&records, Some(&old)).unwrap();
    assert_eq!(s.access_log(0).unwrap().len(), 1, "only a new records file imports");
}

/// Regression: store files were created 0644 (the umask's choice).
#[test]
fn records_and_store_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    s.log_access(&entry(0)).unwrap();
    let store = crate::store::SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
    drop(store);
    for name in ["s.records", "s.records-wal", "s.records-shm", "s.sqlite"] {
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
}

#[test]
fn an_import_that_fails_leaves_no_records_file_so_the_next_open_tries_again() {
    let dir = tempfile::tempdir().unwrap();
    let old = old_store(&dir, "CREATE TABLE access_log (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL);");
    let records = dir.path().join("hub.sqlite.records");
    assert!(RecordsStore::open(&records, Some(&old)).is_err(), "an access log without its columns");
    assert!(!records.exists(), "no half-filled records file is left");
}
