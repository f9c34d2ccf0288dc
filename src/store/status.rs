//! What coordinators need beside the figures: whether the rollup is alive,
//! what each force has had counted, and the dead letters of one operation
//! or force. SQLite side; the types are the store's.

use rusqlite::{params, OptionalExtension};

use super::{DeadLetter, SqliteStore, StoreError};

/// The rollup's sign of life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// When it was written (ms, the hub's clock).
    pub at: i64,
    /// Input records not yet counted or dead-lettered; `None` when the
    /// broker could not say.
    pub lag: Option<i64>,
}

/// The rollup as the store last heard from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollupStatus {
    pub heartbeat_at: i64,
    pub last_commit_at: Option<i64>,
    pub lag: Option<i64>,
}

/// What one force has had counted in one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    pub operation: String,
    pub force: String,
    /// Distinct reports (withdrawn ones included).
    pub events: i64,
    /// The newest Kafka timestamp (ms) of a counted revision.
    pub last_at: i64,
}

/// Which outstanding dead letters: all filters optional. With `operation`,
/// the records that named an operation the hub did not know are included
/// too: a mistyped operation code is most often meant for a running one.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadLetterQuery<'a> {
    pub operation: Option<&'a str>,
    pub force: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// A count of outstanding dead letters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub operation: Option<String>,
    pub force: Option<String>,
    pub reason: String,
    pub count: i64,
}

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rollup_status (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    heartbeat_at   INTEGER NOT NULL,
    last_commit_at INTEGER,
    lag            INTEGER
);
CREATE TABLE IF NOT EXISTS activity (
    operation TEXT NOT NULL,
    force     TEXT NOT NULL,
    events    INTEGER NOT NULL,
    last_at   INTEGER NOT NULL,
    PRIMARY KEY (operation, force)
) WITHOUT ROWID;
";

/// The dead letters that `DeadLetterQuery` selects; ?1 operation, ?2 force, ?3 reason.
const MATCHING: &str = "replayed = 0
    AND (?1 IS NULL OR operation = ?1 OR reason = 'unknown-operation')
    AND (?2 IS NULL OR force = ?2)
    AND (?3 IS NULL OR reason = ?3)";

impl SqliteStore {
    /// Brings a store of an earlier version up to this one: dead letters
    /// gain their operation and time (unknown for the old ones), and the
    /// per-force activity is derived once from the reports and history.
    pub(super) fn has_column(&self, table: &str, column: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2", [table, column], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        if !self.has_column("dead_letters", "operation")? {
            self.conn
                .execute_batch(
                    "ALTER TABLE dead_letters ADD COLUMN operation TEXT;
                     ALTER TABLE dead_letters ADD COLUMN at INTEGER;",
                )
                .map_err(|e| self.err(e))?;
        }
        self.conn
            .execute_batch(
                "CREATE INDEX IF NOT EXISTS dead_letters_by_operation ON dead_letters (operation, force);
                 INSERT INTO activity (operation, force, events, last_at)
                 SELECT r.operation, r.force, COUNT(*),
                        COALESCE((SELECT MAX(h.at) FROM history h WHERE h.operation = r.operation AND h.force = r.force), 0)
                 FROM reports r
                 WHERE NOT EXISTS (SELECT 1 FROM activity)
                 GROUP BY r.operation, r.force;",
            )
            .map_err(|e| self.err(e))
    }

    pub(super) fn write_heartbeat(&mut self, beat: &Heartbeat) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO rollup_status (id, heartbeat_at, lag) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, lag = excluded.lag",
                params![beat.at, beat.lag],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    pub(super) fn read_rollup_status(&self) -> Result<Option<RollupStatus>, StoreError> {
        self.conn
            .query_row("SELECT heartbeat_at, last_commit_at, lag FROM rollup_status WHERE id = 1", [], |r| {
                Ok(RollupStatus { heartbeat_at: r.get(0)?, last_commit_at: r.get(1)?, lag: r.get(2)? })
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub(super) fn read_activity(&self, operation: &str) -> Result<Vec<Activity>, StoreError> {
        self.rows(
            "SELECT operation, force, events, last_at FROM activity WHERE operation = ?1 ORDER BY force",
            [operation],
            |r| Ok(Activity { operation: r.get(0)?, force: r.get(1)?, events: r.get(2)?, last_at: r.get(3)? }),
        )
    }

    pub(super) fn read_tally(&self, q: &DeadLetterQuery<'_>) -> Result<Vec<Tally>, StoreError> {
        let sql = format!(
            "SELECT operation, force, reason, COUNT(*) FROM dead_letters WHERE {MATCHING}
             GROUP BY operation, force, reason ORDER BY operation, force, reason"
        );
        self.rows(&sql, params![q.operation, q.force, q.reason], |r| {
            Ok(Tally { operation: r.get(0)?, force: r.get(1)?, reason: r.get(2)?, count: r.get(3)? })
        })
    }

    pub(super) fn read_outstanding(
        &self,
        q: &DeadLetterQuery<'_>,
        f: &mut dyn FnMut(DeadLetter) -> bool,
    ) -> Result<(), StoreError> {
        self.dead_letters_where(MATCHING, &[&q.operation, &q.force, &q.reason], false, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Batch, DeadLetterLog, Original, Store, TotalsReader};

    fn dead(offset: i64, reason: &str, force: &str, operation: &str) -> DeadLetter {
        DeadLetter {
            topic: "t".into(),
            partition: 0,
            offset,
            reason: reason.into(),
            detail: "d".into(),
            force: Some(force.into()),
            event_id: Some(format!("e{offset}")),
            operation: Some(operation.into()),
            at: Some(1000 + offset),
            original: Original { key: None, value: Some(vec![1, 2, 3]), headers: vec![] },
            sent: true,
            replayed: false,
        }
    }

    #[test]
    fn an_operations_dead_letters_include_unknown_operations_and_filter_by_force_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        let batch = Batch {
            dead_letters: vec![
                dead(1, "outside-window", "MPS", "OP"),
                dead(2, "unknown-operation", "TVP", "OP-TYPO"),
                dead(3, "invalid", "MPS", "OTHER"),
                dead(4, "invalid", "KNT", "OP"),
            ],
            ..Batch::default()
        };
        s.commit(&batch).unwrap();
        let listed = |s: &SqliteStore, q: DeadLetterQuery<'_>| {
            let mut out = Vec::new();
            s.each_outstanding(&q, &mut |d| {
                out.push(d.offset);
                true
            })
            .unwrap();
            out
        };
        assert_eq!(listed(&s, DeadLetterQuery { operation: Some("OP"), ..Default::default() }), [1, 2, 4]);
        assert_eq!(listed(&s, DeadLetterQuery { operation: Some("OP"), force: Some("MPS"), reason: None }), [1]);
        assert_eq!(listed(&s, DeadLetterQuery { reason: Some("invalid"), ..Default::default() }), [3, 4]);
        let tally = s.dead_letter_tally(&DeadLetterQuery { force: Some("MPS"), ..Default::default() }).unwrap();
        assert_eq!(
            tally.iter().map(|t| (t.reason.as_str(), t.count)).collect::<Vec<_>>(),
            [("outside-window", 1), ("invalid", 1)]
        );
        s.mark_replayed(&[("t".into(), 0, 1)]).unwrap();
        assert_eq!(
            listed(&s, DeadLetterQuery { force: Some("MPS"), ..Default::default() }),
            [3],
            "replayed ones are not outstanding"
        );
        let mut one = None;
        s.each_outstanding(&DeadLetterQuery::default(), &mut |d| {
            one = Some(d);
            false
        })
        .unwrap();
        let one = one.unwrap();
        assert_eq!(
            (one.operation.as_deref(), one.at, one.original.value),
            (Some("OP-TYPO"), Some(1002), None),
            "no payload"
        );
    }

    /// A store of the previous version: read as it is (`dlq list` right
    /// after an upgrade), then migrated by the first writer, which derives
    /// each force's activity from the reports and history.
    #[test]
    fn an_older_store_is_read_as_it_is_and_migrated_by_its_first_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE reports (force TEXT NOT NULL, event_id TEXT NOT NULL, revision INTEGER NOT NULL,
                 operation TEXT NOT NULL, identity TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (force, event_id));
             CREATE TABLE history (force TEXT NOT NULL, event_id TEXT NOT NULL, revision INTEGER NOT NULL,
                 operation TEXT NOT NULL, at INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (force, event_id, revision));
             CREATE TABLE dead_letters (topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                 reason TEXT NOT NULL, detail TEXT NOT NULL, force TEXT, event_id TEXT, original BLOB NOT NULL,
                 sent INTEGER NOT NULL, replayed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (topic, partition, offset));
             INSERT INTO reports VALUES ('MPS', 'a', 1, 'OP', 'k1', x''), ('MPS', 'b', 2, 'OP', 'k2', x'');
             INSERT INTO history VALUES ('MPS', 'a', 1, 'OP', 700, x''), ('MPS', 'b', 1, 'OP', 800, x''), ('MPS', 'b', 2, 'OP', 900, x'');
             INSERT INTO dead_letters VALUES ('t', 0, 5, 'invalid', 'd', 'MPS', 'e5', x'', 1, 0);",
        )
        .unwrap();
        drop(old);
        let listed = SqliteStore::open_read(&path).unwrap().dead_letters(None).unwrap();
        assert_eq!((listed.len(), listed[0].operation.as_deref(), listed[0].at), (1, None, None));
        let s = SqliteStore::open(&path).unwrap();
        let act = Activity { operation: "OP".into(), force: "MPS".into(), events: 2, last_at: 900 };
        assert_eq!(s.activity("OP").unwrap(), [act]);
        assert_eq!(s.dead_letters(None).unwrap()[0].reason, "invalid", "the old dead letter stays");
        drop(s);
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.activity("OP").unwrap()[0].events, 2, "derived once, not again on every open");
    }

    #[test]
    fn heartbeats_and_commits_are_kept_apart_and_activity_adds_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        assert_eq!(s.rollup_status().unwrap(), None, "no rollup ever ran");
        s.heartbeat(&Heartbeat { at: 10, lag: Some(5) }).unwrap();
        let version = s.version().unwrap();
        assert_eq!(
            s.rollup_status().unwrap(),
            Some(RollupStatus { heartbeat_at: 10, last_commit_at: None, lag: Some(5) })
        );
        assert_eq!(s.version().unwrap(), version, "a heartbeat does not change the figures' version");
        let act = |events, last_at| Activity { operation: "OP".into(), force: "MPS".into(), events, last_at };
        s.commit(&Batch { activity: vec![act(2, 500)], committed_at: 20, ..Batch::default() }).unwrap();
        s.commit(&Batch { activity: vec![act(1, 400)], committed_at: 30, ..Batch::default() }).unwrap();
        assert_eq!(s.activity("OP").unwrap(), [act(3, 500)], "events add up, the newest time stays");
        assert_eq!(s.rollup_status().unwrap().unwrap().last_commit_at, Some(30));
        s.heartbeat(&Heartbeat { at: 40, lag: None }).unwrap();
        assert_eq!(
            s.rollup_status().unwrap(),
            Some(RollupStatus { heartbeat_at: 40, last_commit_at: Some(30), lag: None })
        );
    }
}
