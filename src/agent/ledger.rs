//! The agent's ledger (what it published for each `record_id`) and outbox
//! (what Kafka has not acknowledged yet), in one SQLite file in `state_dir`.
//! A plan is written to both in one transaction before anything is sent, so
//! a crash between send and acknowledgement resends the same bytes, which
//! the hub absorbs as duplicates (R1).
//!
//! The `runs` table remembers what each file picked up by `agent watch` gave
//! when it was planned (in that same transaction), so that a file planned
//! before a crash gets the same receipt after it.
//!
//! The `secrets` table holds a fingerprint of each operation's
//! pseudonymisation secret (never the secret), so that a changed secret is
//! noticed before it re-keys every joint outcome.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("agent ledger {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("agent ledger {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("agent ledger: the last value of record {record_id:?} cannot be read back: {detail}")]
    Corrupt { record_id: String, detail: String },
    #[error(
        "{file} is refused: it would add {adding} messages to the outbox in {state_dir}, which holds {current} \
         not yet acknowledged by Kafka, over spool_limit {limit}; nothing of the file was recorded. \
         Let the outbox drain (the broker must be reachable) or raise spool_limit, then hand the file in again"
    )]
    SpoolFull { file: String, state_dir: String, limit: u64, current: u64, adding: u64 },
    #[error(
        "another agent (publish, resend or watch) is using {state_dir} (it holds {lock}): wait for it to \
         finish, or stop it; two agents never share a state_dir"
    )]
    InUse { state_dir: String, lock: String },
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

/// A file's run, recorded with its plan: `summary` is what the plan gave
/// (JSON), and its messages are the outbox's `first_seq..=last_seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub id: i64,
    /// The path the file was picked up from.
    pub source: String,
    pub sha256: String,
    pub summary: String,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// Where the file goes once delivered (set just before it is moved).
    pub dest: Option<String>,
}

/// A run to record along with a plan.
pub struct NewRun<'a> {
    pub source: &'a str,
    pub sha256: &'a str,
    pub summary: &'a str,
    pub planned_at: i64,
}

pub struct Ledger {
    conn: Connection,
    path: String,
    state_dir: PathBuf,
    /// Held while this ledger is open: one agent per state folder.
    _lock: std::fs::File,
}

/// `state_dir/agent.lock`, locked: a second agent on the folder would meet
/// SQLite's bare "database is locked" at its first write.
fn lock(state_dir: &Path) -> Result<std::fs::File, LedgerError> {
    let path = state_dir.join("agent.lock");
    let io = |source| LedgerError::Io { path: path.display().to_string(), source };
    crate::private::file(&path).map_err(io)?;
    let file = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(LedgerError::InUse { state_dir: state_dir.display().to_string(), lock: path.display().to_string() })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

impl Ledger {
    pub fn open(state_dir: &Path) -> Result<Self, LedgerError> {
        let file = state_dir.join("ledger.sqlite");
        let path = file.display().to_string();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        crate::private::dir(state_dir)
            .map_err(|source| LedgerError::Io { path: state_dir.display().to_string(), source })?;
        let lock = lock(state_dir)?;
        crate::private::sqlite(&file).map_err(|source| LedgerError::Io { path: path.clone(), source })?;
        let conn = Connection::open(&file).map_err(wrap)?;
        // FULL: an accepted row must survive a power cut. EXCLUSIVE: two
        // agents on one ledger would hand out the same revision twice. A
        // 64 MiB cache holds a large file's plan: with the default 2 MiB the
        // transaction spills pages into the WAL (and re-reads them) as it goes.
        // `records` is keyed by record_id alone (WITHOUT ROWID): one b-tree
        // to write per record, not a table and an index.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA locking_mode=EXCLUSIVE; PRAGMA cache_size=-65536;
             CREATE TABLE IF NOT EXISTS records (
                 record_id TEXT PRIMARY KEY, event_id TEXT NOT NULL, generation INTEGER NOT NULL,
                 revision INTEGER NOT NULL, identity TEXT NOT NULL, content BLOB NOT NULL,
                 withdrawn INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, sha256 TEXT NOT NULL,
                 summary TEXT NOT NULL, first_seq INTEGER, last_seq INTEGER, dest TEXT,
                 state TEXT NOT NULL, planned_at INTEGER NOT NULL, finished_at INTEGER);
             CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, source);
             CREATE TABLE IF NOT EXISTS secrets (
                 operation TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, recorded_at INTEGER NOT NULL);
             BEGIN EXCLUSIVE; COMMIT;",
        )
        .map_err(wrap)?;
        // Absolute, for messages that tell an operator where to look.
        let state_dir = state_dir.canonicalize().unwrap_or_else(|_| state_dir.to_path_buf());
        Ok(Ledger { conn, path, state_dir, _lock: lock })
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite { path: self.path.clone(), source }
    }

    pub fn get(&self, record_id: &str) -> Result<Option<Entry>, LedgerError> {
        // Cached: a plan asks once per row, and preparing costs more than the lookup.
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT record_id, event_id, generation, revision, identity, content, withdrawn, value
                 FROM records WHERE record_id = ?1",
            )
            .map_err(|e| self.err(e))?;
        st.query_row([record_id], |r| {
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
        })
        .optional()
        .map_err(|e| self.err(e))
    }

    /// Records the new entries and queues their messages, atomically.
    pub fn record(&mut self, entries: &[Entry], messages: &[(String, Vec<u8>)]) -> Result<(), LedgerError> {
        self.accept("(plan)", entries, messages, None, u64::MAX).map(|_| ())
    }

    /// Records a file's plan: its entries, its messages and (for `watch`) its
    /// run, in one transaction, unless the messages would take the outbox
    /// over `spool_limit`; then nothing is recorded. Returns the run's id.
    pub fn accept(
        &mut self,
        file: &str,
        entries: &[Entry],
        messages: &[(String, Vec<u8>)],
        run: Option<NewRun<'_>>,
        spool_limit: u64,
    ) -> Result<Option<i64>, LedgerError> {
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        // Counted inside the transaction: the ledger is locked exclusively,
        // so nothing can slip in between the count and the inserts.
        let current: i64 = tx.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0)).map_err(wrap)?;
        let (current, adding) = (current as u64, messages.len() as u64);
        if adding > 0 && current.saturating_add(adding) > spool_limit {
            return Err(LedgerError::SpoolFull {
                file: file.to_string(),
                state_dir: self.state_dir.display().to_string(),
                limit: spool_limit,
                current,
                adding,
            });
        }
        let mut seqs = (None, None);
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO records
                     (record_id, event_id, generation, revision, identity, content, withdrawn, value)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(wrap)?;
            // In key order: each insert then lands beside the one before, and the
            // b-tree grows at its edge instead of splitting pages all over.
            let mut sorted: Vec<&Entry> = entries.iter().collect();
            sorted.sort_unstable_by(|a, b| a.record_id.cmp(&b.record_id));
            for e in sorted {
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
                let seq = queue.insert(params![key, value]).map_err(wrap)?;
                seqs = (seqs.0.or(Some(seq)), Some(seq));
            }
        }
        let id = match run {
            None => None,
            Some(r) => {
                tx.execute(
                    "INSERT INTO runs (source, sha256, summary, first_seq, last_seq, state, planned_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'planned', ?6)",
                    params![r.source, r.sha256, r.summary, seqs.0, seqs.1, r.planned_at],
                )
                .map_err(wrap)?;
                Some(tx.last_insert_rowid())
            }
        };
        tx.commit().map_err(wrap)?;
        Ok(id)
    }

    /// Messages in the outbox (not yet acknowledged by Kafka).
    pub fn outbox_len(&self) -> Result<u64, LedgerError> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// Records the ledger knows.
    pub fn records_len(&self) -> Result<u64, LedgerError> {
        let n: i64 = self.conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(n as u64)
    }

    /// Up to `limit` unacknowledged messages after `after` (a seq), oldest first.
    pub fn pending_after(&self, after: i64, limit: usize) -> Result<Vec<Outgoing>, LedgerError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT seq, key, value FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2")
            .map_err(|e| self.err(e))?;
        let rows = st.query_map(params![after, limit as i64], |r| {
            Ok(Outgoing { seq: r.get(0)?, key: r.get(1)?, value: r.get(2)? })
        });
        rows.and_then(|rows| rows.collect()).map_err(|e| self.err(e))
    }

    /// Messages not yet acknowledged, oldest first.
    pub fn pending(&self) -> Result<Vec<Outgoing>, LedgerError> {
        let mut st = self.conn.prepare("SELECT seq, key, value FROM outbox ORDER BY seq").map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| Ok(Outgoing { seq: r.get(0)?, key: r.get(1)?, value: r.get(2)? }));
        rows.and_then(|rows| rows.collect()).map_err(|e| self.err(e))
    }

    /// Forgets acknowledged messages; returns how many it forgot.
    pub fn acknowledge(&mut self, seqs: &[i64]) -> Result<u64, LedgerError> {
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        let mut forgot = 0;
        {
            // One statement per run of consecutive seqs: a batch is usually one run.
            let mut sorted = seqs.to_vec();
            sorted.sort_unstable();
            let mut del = tx.prepare_cached("DELETE FROM outbox WHERE seq BETWEEN ?1 AND ?2").map_err(wrap)?;
            for run in sorted.chunk_by(|a, b| b - a <= 1) {
                forgot += del.execute([run[0], run[run.len() - 1]]).map_err(wrap)? as u64;
            }
        }
        tx.commit().map_err(wrap)?;
        Ok(forgot)
    }

    /// Queues the last published value of every record again (`agent resend`).
    pub fn requeue_all(&mut self) -> Result<usize, LedgerError> {
        self.conn
            .execute("INSERT INTO outbox (key, value) SELECT identity, value FROM records ORDER BY record_id", [])
            .map_err(|e| self.err(e))
    }

    /// The fingerprint of the secret `operation`'s records were published with.
    pub fn secret_fingerprint(&self, operation: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .query_row("SELECT fingerprint FROM secrets WHERE operation = ?1", [operation], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn set_secret_fingerprint(&mut self, operation: &str, fingerprint: &str, at: i64) -> Result<(), LedgerError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO secrets (operation, fingerprint, recorded_at) VALUES (?1, ?2, ?3)",
                params![operation, fingerprint, at],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Whether any record of `operation` was published from this ledger:
    /// every identity key starts with `{operation}/`, and `0` follows `/`.
    pub fn knows_operation(&self, operation: &str) -> Result<bool, LedgerError> {
        let (from, to) = (format!("{operation}/"), format!("{operation}0"));
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM records WHERE identity >= ?1 AND identity < ?2)",
                [from, to],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Runs planned but not finished yet, oldest first.
    pub fn open_runs(&self) -> Result<Vec<Run>, LedgerError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, source, sha256, summary, first_seq, last_seq, dest FROM runs
                 WHERE state = 'planned' ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([], |r| {
            Ok(Run {
                id: r.get(0)?,
                source: r.get(1)?,
                sha256: r.get(2)?,
                summary: r.get(3)?,
                first_seq: r.get(4)?,
                last_seq: r.get(5)?,
                dest: r.get(6)?,
            })
        });
        rows.and_then(|rows| rows.collect()).map_err(|e| self.err(e))
    }

    /// Whether every message of `run` has been acknowledged.
    pub fn delivered(&self, run: &Run) -> Result<bool, LedgerError> {
        let (Some(first), Some(last)) = (run.first_seq, run.last_seq) else { return Ok(true) };
        // EXISTS, not COUNT: a run may hold a million messages.
        let left: bool = self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM outbox WHERE seq BETWEEN ?1 AND ?2)", [first, last], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(!left)
    }

    /// Records where the run's file is about to go, before it is moved.
    pub fn set_dest(&mut self, run: i64, dest: &str) -> Result<(), LedgerError> {
        self.conn.execute("UPDATE runs SET dest = ?2 WHERE id = ?1", params![run, dest]).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// `finished`: receipt written and file moved; `abandoned`: the file left
    /// the inbox some other way (its messages are delivered all the same).
    pub fn close_run(&mut self, run: i64, state: RunState, at: i64) -> Result<(), LedgerError> {
        let state = match state {
            RunState::Finished => "finished",
            RunState::Abandoned => "abandoned",
        };
        self.conn
            .execute("UPDATE runs SET state = ?2, finished_at = ?3 WHERE id = ?1", params![run, state, at])
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Finished,
    Abandoned,
}

#[cfg(test)]
mod tests {
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
        Entry {
            record_id: id.into(),
            event_id: id.into(),
            generation: 1,
            revision: 1,
            identity: format!("OP/MPS/{id}"),
            content: vec![1],
            withdrawn: false,
            value: vec![2],
        }
    }

    fn messages(ids: &[&str]) -> Vec<(String, Vec<u8>)> {
        ids.iter().map(|id| (format!("OP/MPS/{id}"), id.as_bytes().to_vec())).collect()
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
        assert_eq!((run.id, run.first_seq, run.last_seq, run.dest.as_deref()), (id, Some(2), Some(3), None));
        ledger.acknowledge(&[2, 3]).unwrap();
        assert!(ledger.delivered(run).unwrap(), "the earlier message does not hold it back");
        ledger.set_dest(id, "/in/done/a.csv").unwrap();
        assert_eq!(ledger.open_runs().unwrap()[0].dest.as_deref(), Some("/in/done/a.csv"));
        ledger.close_run(id, RunState::Finished, 2).unwrap();
        assert!(ledger.open_runs().unwrap().is_empty());
        assert_eq!(ledger.pending_after(0, 10).unwrap().len(), 1);
    }
}
