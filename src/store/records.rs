//! The hub's own records, in a SQLite file of their own beside the store:
//! tokens (hashed) and the access log. Nothing here is derived from the
//! topic, so a rebuild, which replaces the store, never touches this file.
//!
//! The access log is append-only (triggers refuse UPDATE, DELETE and any
//! INSERT that would reuse a sequence number, which is what `INSERT OR
//! REPLACE` does) and chained: each entry holds the hash of the one before
//! and its own, so `audit verify` finds an entry changed behind SQLite's back.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::access::{Grant, Role};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tokens (
    id         TEXT PRIMARY KEY,
    hash       BLOB NOT NULL UNIQUE,   -- SHA-256 of the token; the token itself is never stored
    role       TEXT NOT NULL,
    operations TEXT,                   -- JSON list, or NULL for every operation
    label      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS access_log (
    seq           INTEGER PRIMARY KEY, -- 1, 2, 3 … with no gaps
    at            INTEGER NOT NULL,
    token_id      TEXT,
    role          TEXT,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,       -- with the query string
    operation     TEXT,
    status        INTEGER NOT NULL,
    justification TEXT,
    figures_at    TEXT,                -- as_of / from / to of the figures served, resolved
    prev_hash     BLOB NOT NULL,       -- the entry before's `hash` (zeros for the first)
    hash          BLOB NOT NULL        -- SHA-256 of prev_hash and this entry's content
);
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
    BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
    BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_rewrite BEFORE INSERT ON access_log
    WHEN NEW.seq IS NULL OR NEW.seq <= (SELECT COALESCE(MAX(seq), 0) FROM access_log)
    BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
";

/// One consultation of the hub's figures.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    pub seq: i64,
    pub at: i64,
    pub token_id: Option<String>,
    pub role: Option<String>,
    pub method: String,
    pub path: String,
    pub operation: Option<String>,
    pub status: u16,
    pub justification: Option<String>,
    /// The moments the figures served were for (`as_of`, `from`, `to`),
    /// resolved to UTC: what was seen, whatever form the query took.
    pub figures_at: Option<String>,
}

/// Tokens and the access log.
pub trait AccessStore {
    fn add_token(&mut self, hash: &[u8; 32], grant: &Grant) -> Result<(), StoreError>;
    /// The active token with this hash.
    fn find_token(&self, hash: &[u8; 32]) -> Result<Option<Grant>, StoreError>;
    /// The token with this hash, revoked or not: who is still presenting a
    /// revoked token is worth recording.
    fn find_token_any(&self, hash: &[u8; 32]) -> Result<Option<Grant>, StoreError>;
    /// Whether the token with this id exists and is not revoked.
    fn token_active(&self, id: &str) -> Result<bool, StoreError>;
    fn tokens(&self) -> Result<Vec<Grant>, StoreError>;
    fn revoke_token(&mut self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// Appends one entry (`seq` is assigned by the store).
    fn log_access(&mut self, entry: &Access) -> Result<(), StoreError>;
    fn access_log(&self, since: i64) -> Result<Vec<Access>, StoreError>;
}

/// The outcome of checking the access log's chain.
#[derive(Debug, PartialEq, Eq)]
pub struct ChainCheck {
    pub entries: u64,
    /// The last entry's hash (hex): noted elsewhere, it also shows later
    /// truncation or a rewritten chain.
    pub head: String,
    /// The first entry that does not fit, and why.
    pub first_bad: Option<(i64, String)>,
}

const GENESIS: [u8; 32] = [0; 32];

/// The hash of an entry: its predecessor's hash, then its content as a JSON
/// array (unambiguous, whatever bytes the fields hold).
pub fn entry_hash(prev: &[u8], a: &Access) -> [u8; 32] {
    let mut content = serde_json::to_vec(&(
        a.seq,
        a.at,
        &a.token_id,
        &a.role,
        &a.method,
        &a.path,
        &a.operation,
        a.status,
        &a.justification,
    ))
    .expect("plain values serialise");
    // Entries from before `figures_at` existed keep the hash they were
    // given: the field joins the array only when it is set.
    if let Some(at) = &a.figures_at {
        content.pop();
        content.push(b',');
        content.extend(serde_json::to_vec(at).expect("a string serialises"));
        content.push(b']');
    }
    let mut h = Sha256::new();
    h.update(prev);
    h.update(&content);
    h.finalize().into()
}

pub struct RecordsStore {
    pub(super) conn: Connection,
    path: String,
}

fn grant_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    let id: String = r.get(0)?;
    let role: String = r.get(1)?;
    let operations: Option<String> = r.get(2)?;
    // A list that cannot be read grants nothing: "unreadable" must never
    // widen to "every operation".
    let operations = operations.map(|o| {
        serde_json::from_str(&o).unwrap_or_else(|e| {
            tracing::warn!(token = %id, error = %e, "Token's operation list unreadable; it grants none.");
            Vec::new()
        })
    });
    Ok(Grant {
        id,
        // Only `issue` writes roles, and it parses them first.
        role: Role::parse(&role).unwrap_or(Role::Force("??".into())),
        operations,
        label: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn access_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Access> {
    Ok(Access {
        seq: r.get(0)?,
        at: r.get(1)?,
        token_id: r.get(2)?,
        role: r.get(3)?,
        method: r.get(4)?,
        path: r.get(5)?,
        operation: r.get(6)?,
        status: r.get(7)?,
        justification: r.get(8)?,
        figures_at: r.get(9)?,
    })
}

const LEGACY_TOKEN_COLUMNS: &str = "id, hash, role, operations, label, created_at, revoked_at";
/// A row of an older store's `tokens` table, in [`LEGACY_TOKEN_COLUMNS`] order.
type LegacyToken = (String, Vec<u8>, String, Option<String>, String, i64, Option<i64>);
const GRANT_COLUMNS: &str = "id, role, operations, label, created_at, revoked_at";
const ACCESS_COLUMNS: &str = "seq, at, token_id, role, method, path, operation, status, justification, figures_at";
/// An older store's access log, without `figures_at`.
const LEGACY_ACCESS_COLUMNS: &str = "seq, at, token_id, role, method, path, operation, status, justification, NULL";

impl RecordsStore {
    /// Opens (creating if needed, mode 0600) the records file. When it is
    /// new and `legacy` (the store) still holds tokens and an access log
    /// from before the two were split, they are carried over.
    pub fn open(path: &Path, legacy: Option<&Path>) -> Result<Self, StoreError> {
        let fresh = !path.exists();
        super::files::prepare_private(path)?;
        let shown = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite { path: shown.clone(), source })?;
        let mut s = RecordsStore { conn, path: shown };
        s.conn
            .execute_batch("PRAGMA busy_timeout=10000; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(|e| s.err(e))?;
        s.conn.execute_batch(SCHEMA).map_err(|e| s.err(e))?;
        s.conn.execute_batch(super::publications::SCHEMA).map_err(|e| s.err(e))?;
        s.add_figures_at()?;
        if let Some(old) = legacy.filter(|p| fresh && p.exists()) {
            // All or nothing: a half-filled records file would never be
            // filled again (only a new one imports), so it goes.
            if let Err(e) = s.import_legacy(old) {
                drop(s);
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(crate::private::with_suffix(path, suffix));
                }
                return Err(e);
            }
        }
        Ok(s)
    }

    pub(super) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    pub(super) fn rows<T, C: FromIterator<T>>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<C, StoreError> {
        super::collect_rows(&self.conn, &self.path, sql, params, row)
    }

    /// A records file of an earlier version gains the `figures_at` column.
    fn add_figures_at(&self) -> Result<(), StoreError> {
        let has: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM pragma_table_info('access_log') WHERE name = 'figures_at'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?;
        if has == 0 {
            self.conn.execute_batch("ALTER TABLE access_log ADD COLUMN figures_at TEXT;").map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Tokens and access log kept in the store by earlier versions.
    fn import_legacy(&mut self, store: &Path) -> Result<(), StoreError> {
        let err = |source| StoreError::Sqlite { path: store.display().to_string(), source };
        let old = Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
        let has = |table: &str| -> rusqlite::Result<bool> {
            old.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)
        };
        if has("tokens").map_err(err)? {
            let rows: Vec<LegacyToken> = old
                .prepare(&format!("SELECT {LEGACY_TOKEN_COLUMNS} FROM tokens"))
                .and_then(|mut st| {
                    st.query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                    })?
                    .collect()
                })
                .map_err(err)?;
            let sql =
                format!("INSERT OR IGNORE INTO tokens ({LEGACY_TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
            for t in rows {
                self.conn.execute(&sql, params![t.0, t.1, t.2, t.3, t.4, t.5, t.6]).map_err(|e| self.err(e))?;
            }
        }
        if has("access_log").map_err(err)? {
            let rows: Vec<Access> = old
                .prepare(&format!("SELECT {LEGACY_ACCESS_COLUMNS} FROM access_log ORDER BY seq"))
                .and_then(|mut st| st.query_map([], access_of)?.collect())
                .map_err(err)?;
            for a in &rows {
                self.log_access(a)?;
            }
        }
        Ok(())
    }

    /// Checks every entry's link to the one before and its own hash.
    pub fn verify_chain(&self) -> Result<ChainCheck, StoreError> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {ACCESS_COLUMNS}, prev_hash, hash FROM access_log ORDER BY seq"))
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        let (mut prev, mut expected_seq, mut entries) = (GENESIS.to_vec(), 1i64, 0u64);
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let a = access_of(r).map_err(|e| self.err(e))?;
            let (link, hash): (Vec<u8>, Vec<u8>) =
                (r.get(10).map_err(|e| self.err(e))?, r.get(11).map_err(|e| self.err(e))?);
            let problem = if a.seq != expected_seq {
                Some(format!("expected entry {expected_seq} here, found {}", a.seq))
            } else if link != prev {
                Some("does not link to the entry before".to_string())
            } else if hash != entry_hash(&prev, &a) {
                Some("its content does not match its hash".to_string())
            } else {
                None
            };
            if let Some(p) = problem {
                return Ok(ChainCheck { entries, head: hex::encode(&prev), first_bad: Some((a.seq, p)) });
            }
            prev = hash;
            expected_seq += 1;
            entries += 1;
        }
        Ok(ChainCheck { entries, head: hex::encode(&prev), first_bad: None })
    }

    /// Runs raw SQL on the records file: for tests that play the intruder.
    #[doc(hidden)]
    pub fn execute_raw(&self, sql: &str) -> Result<usize, StoreError> {
        self.conn.execute(sql, []).map_err(|e| self.err(e))
    }
}

impl AccessStore for RecordsStore {
    fn add_token(&mut self, hash: &[u8; 32], g: &Grant) -> Result<(), StoreError> {
        let operations = g.operations.as_ref().map(|o| serde_json::to_string(o).expect("strings serialise"));
        self.conn
            .execute(
                "INSERT INTO tokens (id, hash, role, operations, label, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![g.id, hash.as_slice(), g.role.to_string(), operations, g.label, g.created_at],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn find_token(&self, hash: &[u8; 32]) -> Result<Option<Grant>, StoreError> {
        Ok(self.find_token_any(hash)?.filter(|g| g.revoked_at.is_none()))
    }

    fn find_token_any(&self, hash: &[u8; 32]) -> Result<Option<Grant>, StoreError> {
        self.conn
            .query_row(&format!("SELECT {GRANT_COLUMNS} FROM tokens WHERE hash = ?1"), [hash.as_slice()], grant_of)
            .optional()
            .map_err(|e| self.err(e))
    }

    fn token_active(&self, id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM tokens WHERE id = ?1 AND revoked_at IS NULL", [id], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    fn tokens(&self) -> Result<Vec<Grant>, StoreError> {
        self.rows(&format!("SELECT {GRANT_COLUMNS} FROM tokens ORDER BY created_at"), [], grant_of)
    }

    fn revoke_token(&mut self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.conn
            .execute("UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, at])
            .map(|n| n > 0)
            .map_err(|e| self.err(e))
    }

    fn log_access(&mut self, a: &Access) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite { path: path.clone(), source };
        // IMMEDIATE: the read of the last entry and the append are one step,
        // even with several writers (serve, a second serve, an import).
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let last: Option<(i64, Vec<u8>)> = tx
            .query_row("SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(err)?;
        let (seq, prev) = last.map_or((1, GENESIS.to_vec()), |(s, h)| (s + 1, h));
        let entry = Access { seq, ..a.clone() };
        let hash = entry_hash(&prev, &entry);
        tx.execute(
            "INSERT INTO access_log (seq, at, token_id, role, method, path, operation, status, justification, prev_hash, hash, figures_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                seq,
                a.at,
                a.token_id,
                a.role,
                a.method,
                a.path,
                a.operation,
                a.status,
                a.justification,
                prev,
                hash.as_slice(),
                a.figures_at
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn access_log(&self, since: i64) -> Result<Vec<Access>, StoreError> {
        self.rows(&format!("SELECT {ACCESS_COLUMNS} FROM access_log WHERE at >= ?1 ORDER BY seq"), [since], access_of)
    }
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
