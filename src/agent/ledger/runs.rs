//! The ledger's small tables: each file `watch` picked up (`runs`, recorded
//! in the same transaction as its plan, so that a file planned before a crash
//! gets the same receipt after it), and each operation's secret fingerprint
//! (`secrets`).

use rusqlite::{params, OptionalExtension};

use super::blobs::batch_of;
use super::{Ledger, LedgerError};

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
    /// When it was accepted (ms).
    pub planned_at: i64,
}

/// A run to record along with a plan.
pub struct NewRun<'a> {
    pub source: &'a str,
    pub sha256: &'a str,
    pub summary: &'a str,
    pub planned_at: i64,
}

impl Ledger {
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

    /// Runs planned but not finished yet, oldest first.
    pub fn open_runs(&self) -> Result<Vec<Run>, LedgerError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, source, sha256, summary, first_seq, last_seq, dest, planned_at FROM runs
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
                planned_at: r.get(7)?,
            })
        });
        rows.and_then(|rows| rows.collect()).map_err(|e| self.err(e))
    }

    /// Whether every message of `run` has been acknowledged: a run's messages
    /// fill batches of their own.
    pub fn delivered(&self, run: &Run) -> Result<bool, LedgerError> {
        let (Some(first), Some(last)) = (run.first_seq, run.last_seq) else { return Ok(true) };
        let left: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM batches WHERE seq BETWEEN ?1 AND ?2)",
                [batch_of(first), batch_of(last)],
                |r| r.get(0),
            )
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
