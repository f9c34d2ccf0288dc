//! The agent's ledger (what it published for each `record_id`) and outbox
//! (what Kafka has not acknowledged yet), in one SQLite file in `state_dir`.
//! A plan is written to both in one transaction before anything is sent, so
//! a crash between send and acknowledgement resends the same bytes, which
//! the hub absorbs as duplicates (R1).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("agent ledger {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("agent ledger {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("agent ledger: the last value of record {record_id:?} cannot be read back: {detail}")]
    Corrupt { record_id: String, detail: String },
}

impl LedgerError {
    pub fn corrupt(record_id: &str, detail: impl std::fmt::Display) -> Self {
        LedgerError::Corrupt { record_id: record_id.to_string(), detail: detail.to_string() }
    }
}

/// What the ledger remembers of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub record_id: String,
    pub event_id: String,
    /// 1 while `event_id == record_id`; the suffix after an identity change.
    pub generation: i64,
    pub revision: i32,
    /// The identity key the report was published under.
    pub identity: String,
    /// Canonical bytes of everything but event id, revision and reported_at.
    pub content: Vec<u8>,
    pub withdrawn: bool,
    /// The last published single-object value (for withdrawals and resends).
    pub value: Vec<u8>,
}

/// One message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub seq: i64,
    pub key: String,
    pub value: Vec<u8>,
}

pub struct Ledger {
    conn: Connection,
    path: String,
}

impl Ledger {
    pub fn open(state_dir: &Path) -> Result<Self, LedgerError> {
        let file = state_dir.join("ledger.sqlite");
        let path = file.display().to_string();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        std::fs::create_dir_all(state_dir)
            .map_err(|source| LedgerError::Io { path: state_dir.display().to_string(), source })?;
        let conn = Connection::open(&file).map_err(wrap)?;
        // FULL: an accepted row must survive a power cut. EXCLUSIVE: two
        // agents on one ledger would hand out the same revision twice.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA locking_mode=EXCLUSIVE;
             CREATE TABLE IF NOT EXISTS records (
                 record_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, generation INTEGER NOT NULL,
                 revision INTEGER NOT NULL, identity TEXT NOT NULL, content BLOB NOT NULL,
                 withdrawn INTEGER NOT NULL, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, value BLOB NOT NULL);
             BEGIN EXCLUSIVE; COMMIT;",
        )
        .map_err(wrap)?;
        Ok(Ledger { conn, path })
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite { path: self.path.clone(), source }
    }

    pub fn get(&self, record_id: &str) -> Result<Option<Entry>, LedgerError> {
        self.conn
            .query_row(
                "SELECT record_id, event_id, generation, revision, identity, content, withdrawn, value
                 FROM records WHERE record_id = ?1",
                [record_id],
                |r| {
                    Ok(Entry {
                        record_id: r.get(0)?,
                        event_id: r.get(1)?,
                        generation: r.get(2)?,
                        revision: r.get(3)?,
                        identity: r.get(4)?,
                        content: r.get(5)?,
                        withdrawn: r.get(6)?,
                        value: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records the new entries and queues their messages, atomically.
    pub fn record(&mut self, entries: &[Entry], messages: &[(String, Vec<u8>)]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO records
                     (record_id, event_id, generation, revision, identity, content, withdrawn, value)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(wrap)?;
            for e in entries {
                put.execute(params![
                    e.record_id,
                    e.event_id,
                    e.generation,
                    e.revision,
                    e.identity,
                    e.content,
                    e.withdrawn,
                    e.value
                ])
                .map_err(wrap)?;
            }
            let mut queue = tx.prepare_cached("INSERT INTO outbox (key, value) VALUES (?1, ?2)").map_err(wrap)?;
            for (key, value) in messages {
                queue.execute(params![key, value]).map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Messages not yet acknowledged, oldest first.
    pub fn pending(&self) -> Result<Vec<Outgoing>, LedgerError> {
        let mut st = self.conn.prepare("SELECT seq, key, value FROM outbox ORDER BY seq").map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok(Outgoing { seq: r.get(0)?, key: r.get(1)?, value: r.get(2)? }));
        rows.and_then(|rows| rows.collect()).map_err(|e| self.err(e))
    }

    /// Forgets acknowledged messages.
    pub fn acknowledge(&mut self, seqs: &[i64]) -> Result<(), LedgerError> {
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1").map_err(wrap)?;
            for s in seqs {
                del.execute([s]).map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Queues the last published value of every record again (`agent resend`).
    pub fn requeue_all(&mut self) -> Result<usize, LedgerError> {
        self.conn
            .execute("INSERT INTO outbox (key, value) SELECT identity, value FROM records ORDER BY record_id", [])
            .map_err(|e| self.err(e))
    }
}
