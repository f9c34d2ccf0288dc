//! SQLite implementation of the store (WAL, so readers never block the rollup).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection};

use super::{
    Activity, Batch, DeadLetter, DeadLetterLog, DeadLetterQuery, Heartbeat, Original, Position, ReportRow,
    RollupStatus, Store, StoreError, Tally, TotalsReader,
};
use crate::domain::engine::Day;
use crate::domain::{OperationTotals, Totals};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reports (
    force     TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    revision  INTEGER NOT NULL,
    operation TEXT NOT NULL,
    identity  TEXT NOT NULL,
    value     BLOB NOT NULL,          -- single-object encoded current state
    PRIMARY KEY (force, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    force     TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    revision  INTEGER NOT NULL,
    operation TEXT NOT NULL,
    at        INTEGER NOT NULL,       -- Kafka timestamp (ms) of the record
    value     BLOB NOT NULL,
    PRIMARY KEY (force, event_id, revision)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS history_by_time ON history (operation, at);
CREATE TABLE IF NOT EXISTS batches (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    n         INTEGER NOT NULL        -- bumped by every committed batch
);
CREATE TABLE IF NOT EXISTS totals (
    operation TEXT NOT NULL,
    scope     TEXT NOT NULL,          -- '' joint, a force code, '+FORCE' its joint credit, '@YYYY-MM-DD' a day's joint totals,
                                      -- '?' the provisional part of the joint totals, '?FORCE' of a force's
    name      TEXT NOT NULL,
    value     INTEGER NOT NULL,
    PRIMARY KEY (operation, scope, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    topic      TEXT NOT NULL,
    partition  INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    force      TEXT,
    event_id   TEXT,
    original   BLOB NOT NULL,         -- key, value and headers as they arrived (Original::to_bytes)
    sent       INTEGER NOT NULL,      -- on the dead-letter topic
    replayed   INTEGER NOT NULL DEFAULT 0,
    operation  TEXT,                  -- as the record named it, when it could be read
    at         INTEGER,               -- the record's Kafka timestamp (ms)
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS offsets (
    topic     TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next      INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
";

/// The writer's settings. NORMAL is durable across process crashes in WAL
/// mode; only a power loss may undo the last transactions, which the topic
/// replays. The page cache (64 MiB, against SQLite's 2 MiB) keeps the
/// reports' and history's inner B-tree pages in memory, so a batch's
/// random-key inserts do not read them back from the OS; checkpoints every
/// 16k pages (64 MiB of WAL) write a page changed by many batches once.
const WRITER_PRAGMAS: &str =
    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=16384;";

pub struct SqliteStore {
    pub(super) conn: Connection,
    path: String,
}

impl SqliteStore {
    /// Opens (creating if needed) the store for the rollup.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        super::files::prepare_private(path)?;
        let s = Self::connect(path, true)?;
        s.conn.execute_batch(SCHEMA).map_err(|e| s.err(e))?;
        s.conn.execute_batch(super::status::SCHEMA).map_err(|e| s.err(e))?;
        s.migrate()?;
        Ok(s)
    }

    /// Opens an existing store to read, while a rollup may be writing it.
    pub fn open_read(path: &Path) -> Result<Self, StoreError> {
        Self::connect(path, false)
    }

    fn connect(path: &Path, writer: bool) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite { path: shown.clone(), source })?;
        let s = SqliteStore { conn, path: shown };
        s.conn.execute_batch("PRAGMA busy_timeout=10000;").map_err(|e| s.err(e))?;
        // Only a writer sets the journal mode (it stays with the file):
        // switching it needs a lock a reader must not contend for.
        if writer {
            s.conn.execute_batch(WRITER_PRAGMAS).map_err(|e| s.err(e))?;
        }
        Ok(s)
    }

    pub(super) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    /// Runs a query and collects every row; any error names the store.
    pub(super) fn rows<T, C: FromIterator<T>>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<C, StoreError> {
        super::collect_rows(&self.conn, &self.path, sql, params, row)
    }
}

impl Store for SqliteStore {
    fn reports(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        self.rows("SELECT force, event_id, value FROM reports", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    }

    fn offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, StoreError> {
        self.rows("SELECT partition, next FROM offsets WHERE topic = ?1", [topic], |r| Ok((r.get(0)?, r.get(1)?)))
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO reports (force, event_id, revision, operation, identity, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (force, event_id) DO UPDATE SET revision = excluded.revision, value = excluded.value",
                )
                .map_err(err)?;
            for ReportRow { event: e, identity, value } in &batch.reports {
                put.execute(params![e.force, e.event_id, e.revision, e.operation, identity, value]).map_err(err)?;
            }
            let mut hist = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO history (force, event_id, revision, operation, at, value)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for h in &batch.history {
                hist.execute(params![h.force, h.event_id, h.revision, h.operation, h.at, h.value]).map_err(err)?;
            }
            let mut clear = tx.prepare_cached("DELETE FROM totals WHERE operation = ?1").map_err(err)?;
            let mut total = tx
                .prepare_cached("INSERT INTO totals (operation, scope, name, value) VALUES (?1, ?2, ?3, ?4)")
                .map_err(err)?;
            for (op, t) in &batch.totals {
                clear.execute([op]).map_err(err)?;
                let days = t.days.iter().map(|(d, r)| (format!("@{}", day_text(*d)), r));
                let credits = t.joint_credit.iter().map(|(f, r)| (format!("+{f}"), r));
                let pending = t.provisional_forces.iter().map(|(f, r)| (format!("?{f}"), r));
                let scopes = std::iter::once((String::new(), &t.joint))
                    .chain(t.forces.iter().map(|(f, r)| (f.clone(), r)))
                    .chain(credits)
                    .chain(days)
                    .chain(std::iter::once(("?".to_string(), &t.provisional)))
                    .chain(pending);
                for (scope, row) in scopes {
                    for (name, value) in row.iter() {
                        total.execute(params![op, scope, name, value]).map_err(err)?;
                    }
                }
            }
            tx.execute("INSERT INTO batches (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1", [])
                .map_err(err)?;
            let mut dl = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO dead_letters
                     (topic, partition, offset, reason, detail, force, event_id, original, sent, replayed, operation, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                )
                .map_err(err)?;
            for d in &batch.dead_letters {
                let original = d.original.to_bytes();
                dl.execute(params![
                    d.topic,
                    d.partition,
                    d.offset,
                    d.reason,
                    d.detail,
                    d.force,
                    d.event_id,
                    original,
                    d.sent,
                    d.replayed,
                    d.operation,
                    d.at
                ])
                .map_err(err)?;
            }
            let mut off = tx
                .prepare_cached(
                    "INSERT INTO offsets (topic, partition, next) VALUES (?1, ?2, ?3)
                     ON CONFLICT (topic, partition) DO UPDATE SET next = excluded.next",
                )
                .map_err(err)?;
            for (topic, partition, next) in &batch.offsets {
                off.execute(params![topic, partition, next]).map_err(err)?;
            }
            let mut act = tx
                .prepare_cached(
                    "INSERT INTO activity (operation, force, events, last_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (operation, force) DO UPDATE
                     SET events = events + excluded.events, last_at = MAX(last_at, excluded.last_at)",
                )
                .map_err(err)?;
            for a in &batch.activity {
                act.execute(params![a.operation, a.force, a.events, a.last_at]).map_err(err)?;
            }
            if batch.committed_at > 0 {
                // A commit is a sign of life too.
                tx.execute(
                    "INSERT INTO rollup_status (id, heartbeat_at, last_commit_at) VALUES (1, ?1, ?1)
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = MAX(heartbeat_at, excluded.heartbeat_at),
                                                    last_commit_at = excluded.last_commit_at",
                    [batch.committed_at],
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn heartbeat(&mut self, beat: &Heartbeat) -> Result<(), StoreError> {
        self.write_heartbeat(beat)
    }

    fn seal(self: Box<Self>) -> Result<(), StoreError> {
        self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;").map_err(|e| self.err(e))
    }
}

impl TotalsReader for SqliteStore {
    fn totals(&self, operation: &str) -> Result<Option<OperationTotals>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            self.rows("SELECT scope, name, value FROM totals WHERE operation = ?1", [operation], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut out = OperationTotals::default();
        for (scope, name, value) in rows {
            let target = if scope.is_empty() {
                &mut out.joint
            } else if let Some(day) = scope.strip_prefix('@').and_then(day_number) {
                out.days.entry(day).or_default()
            } else if let Some(force) = scope.strip_prefix('+') {
                out.joint_credit.entry(force.to_string()).or_default()
            } else if scope == "?" {
                &mut out.provisional
            } else if let Some(force) = scope.strip_prefix('?') {
                out.provisional_forces.entry(force.to_string()).or_default()
            } else {
                out.forces.entry(scope).or_insert_with(Totals::default)
            };
            if let Some(slot) = target.get_mut(&name) {
                *slot = value;
            }
        }
        Ok(Some(out))
    }

    fn dead_letter_counts(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        self.rows("SELECT reason, COUNT(*) FROM dead_letters WHERE replayed = 0 GROUP BY reason", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    fn history_until(&self, operation: &str, at: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.rows("SELECT value FROM history WHERE operation = ?1 AND at <= ?2", params![operation, at], |r| r.get(0))
    }

    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE((SELECT n FROM batches WHERE id = 1), 0)", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn rollup_status(&self) -> Result<Option<RollupStatus>, StoreError> {
        self.read_rollup_status()
    }

    fn activity(&self, operation: &str) -> Result<Vec<Activity>, StoreError> {
        self.read_activity(operation)
    }

    fn dead_letter_tally(&self, q: &DeadLetterQuery<'_>) -> Result<Vec<Tally>, StoreError> {
        self.read_tally(q)
    }

    fn each_outstanding(
        &self,
        q: &DeadLetterQuery<'_>,
        f: &mut dyn FnMut(DeadLetter) -> bool,
    ) -> Result<(), StoreError> {
        self.read_outstanding(q, f)
    }
}

/// `Day` 19640 ↔ "2023-10-10": days are stored readable.
pub fn day_text(day: Day) -> String {
    chrono::DateTime::from_timestamp(day * 86_400, 0).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

pub fn day_number(text: &str) -> Option<Day> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days())
}

impl DeadLetterLog for SqliteStore {
    fn each_dead_letter(
        &self,
        reason: Option<&str>,
        originals: bool,
        f: &mut dyn FnMut(DeadLetter) -> bool,
    ) -> Result<(), StoreError> {
        self.dead_letters_where("?1 IS NULL OR reason = ?1", &[&reason], originals, f)
    }

    fn mark_sent(&mut self, positions: &[Position]) -> Result<(), StoreError> {
        self.set_flag("sent", positions)
    }

    fn mark_replayed(&mut self, positions: &[Position]) -> Result<(), StoreError> {
        self.set_flag("replayed", positions)
    }
}

impl SqliteStore {
    /// Hands each dead letter matching `filter` (SQL over `params`) to `f`,
    /// in source order, until it returns false; without `originals` the
    /// original bytes are not read.
    pub(super) fn dead_letters_where(
        &self,
        filter: &str,
        params: &[&dyn rusqlite::ToSql],
        originals: bool,
        f: &mut dyn FnMut(DeadLetter) -> bool,
    ) -> Result<(), StoreError> {
        let original = if originals { "original" } else { "x''" };
        // A store an older rollup made, read before a newer one migrated it
        // (`dlq list` right after an upgrade), has no operation or time.
        let named = if self.has_column("dead_letters", "operation")? { "operation, at" } else { "NULL, NULL" };
        let sql = format!(
            "SELECT topic, partition, offset, reason, detail, force, event_id, {named}, sent, replayed, {original}
             FROM dead_letters WHERE {filter} ORDER BY topic, partition, offset"
        );
        let mut run = || -> rusqlite::Result<()> {
            let mut st = self.conn.prepare(&sql)?;
            let mut rows = st.query(params)?;
            while let Some(r) = rows.next()? {
                let original: Vec<u8> = r.get(11)?;
                let d = DeadLetter {
                    topic: r.get(0)?,
                    partition: r.get(1)?,
                    offset: r.get(2)?,
                    reason: r.get(3)?,
                    detail: r.get(4)?,
                    force: r.get(5)?,
                    event_id: r.get(6)?,
                    operation: r.get(7)?,
                    at: r.get(8)?,
                    sent: r.get(9)?,
                    replayed: r.get(10)?,
                    original: Original::from_bytes(&original).unwrap_or_default(),
                };
                if !f(d) {
                    break;
                }
            }
            Ok(())
        };
        run().map_err(|e| self.err(e))
    }

    fn set_flag(&mut self, column: &str, positions: &[Position]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(err)?;
        {
            // `column` is one of two literals above, never input.
            let sql =
                format!("UPDATE dead_letters SET {column} = 1 WHERE topic = ?1 AND partition = ?2 AND offset = ?3");
            let mut st = tx.prepare(&sql).map_err(err)?;
            for (t, p, o) in positions {
                st.execute(params![t, p, o]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DeadLetter, Original};

    #[test]
    fn a_batch_commits_totals_offsets_and_dead_letters_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("x/s.sqlite")).unwrap();
        let mut t = OperationTotals::default();
        t.joint.arrests = 3;
        t.forces.insert("MPS".into(), Totals { arrests: 2, ..Totals::default() });
        let dl = DeadLetter {
            topic: "t".into(),
            partition: 1,
            offset: 9,
            reason: "invalid".into(),
            detail: "d".into(),
            force: None,
            event_id: None,
            operation: None,
            at: None,
            original: Original { key: Some(b"k".to_vec()), value: None, headers: vec![("h".into(), None)] },
            sent: true,
            replayed: false,
        };
        let batch = Batch {
            totals: vec![("OP".into(), t.clone())],
            dead_letters: vec![dl.clone(), dl],
            offsets: vec![("t".into(), 1, 10)],
            ..Batch::default()
        };
        s.commit(&batch).unwrap();
        let r = SqliteStore::open_read(&dir.path().join("x/s.sqlite")).unwrap();
        assert_eq!(r.totals("OP").unwrap(), Some(t));
        assert_eq!(r.totals("NONE").unwrap(), None);
        assert_eq!(r.offsets("t").unwrap(), BTreeMap::from([(1, 10)]));
        assert_eq!(
            r.dead_letter_counts().unwrap(),
            BTreeMap::from([("invalid".to_string(), 1)]),
            "redelivery is stored once"
        );
    }

    /// Regression: originals were stored as JSON arrays of numbers, 3.6
    /// times their size.
    #[test]
    fn dead_letter_originals_are_stored_as_bytes_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut s = SqliteStore::open(&path).unwrap();
        let value: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let original = Original {
            key: None,
            value: Some(value),
            headers: vec![("a".into(), Some(vec![0, 1])), ("b".into(), None), ("c".into(), Some(vec![]))],
        };
        let dl = DeadLetter {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            reason: "undecodable".into(),
            detail: String::new(),
            force: None,
            event_id: None,
            operation: None,
            at: None,
            original: original.clone(),
            sent: true,
            replayed: false,
        };
        s.commit(&Batch { dead_letters: vec![dl], ..Batch::default() }).unwrap();
        assert_eq!(s.dead_letters(None).unwrap()[0].original, original);
        let stored: i64 = s.conn.query_row("SELECT length(original) FROM dead_letters", [], |r| r.get(0)).unwrap();
        assert!(stored < 100_100, "{stored} bytes stored for 100,000");
        // A listing without originals does not read them.
        let mut listed = Vec::new();
        s.each_dead_letter(None, false, &mut |d| {
            listed.push(d);
            true
        })
        .unwrap();
        assert_eq!(listed[0].original, Original::default());
        // The first version's JSON still reads.
        let json = serde_json::to_vec(&original).unwrap();
        assert_eq!(Original::from_bytes(&json), Some(original.clone()));
        let bytes = original.to_bytes();
        assert_eq!(Original::from_bytes(&bytes[..bytes.len() - 1]), None, "truncated");
    }
}
