//! Tokens (hashed) and the append-only access log, in the SQLite store.

use rusqlite::{params, OptionalExtension};

use super::{SqliteStore, StoreError};
use crate::access::{Grant, Role};

pub(super) const SCHEMA: &str = "
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
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    token_id      TEXT,
    role          TEXT,
    method        TEXT NOT NULL,
    path          TEXT NOT NULL,
    operation     TEXT,
    status        INTEGER NOT NULL,
    justification TEXT
);
CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log
    BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log
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
}

/// Tokens and the access log.
pub trait AccessStore {
    fn add_token(&mut self, hash: &[u8; 32], grant: &Grant) -> Result<(), StoreError>;
    fn find_token(&self, hash: &[u8; 32]) -> Result<Option<Grant>, StoreError>;
    fn tokens(&self) -> Result<Vec<Grant>, StoreError>;
    fn revoke_token(&mut self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// Appends one entry (`seq` is assigned by the store).
    fn log_access(&mut self, entry: &Access) -> Result<(), StoreError>;
    fn access_log(&self, since: i64) -> Result<Vec<Access>, StoreError>;
}

fn grant_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    let role: String = r.get(1)?;
    let operations: Option<String> = r.get(2)?;
    Ok(Grant {
        id: r.get(0)?,
        // Only `issue` writes roles, and it parses them first.
        role: Role::parse(&role).unwrap_or(Role::Force("??".into())),
        operations: operations.and_then(|o| serde_json::from_str(&o).ok()),
        label: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

const GRANT_COLUMNS: &str = "id, role, operations, label, created_at, revoked_at";

impl AccessStore for SqliteStore {
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
        self.conn
            .query_row(
                &format!("SELECT {GRANT_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_at IS NULL"),
                [hash.as_slice()],
                grant_of,
            )
            .optional()
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
        self.conn
            .execute(
                "INSERT INTO access_log (at, token_id, role, method, path, operation, status, justification)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![a.at, a.token_id, a.role, a.method, a.path, a.operation, a.status, a.justification],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn access_log(&self, since: i64) -> Result<Vec<Access>, StoreError> {
        self.rows(
            "SELECT seq, at, token_id, role, method, path, operation, status, justification
             FROM access_log WHERE at >= ?1 ORDER BY seq",
            [since],
            |r| {
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
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{hash_token, new_token, token_id};

    #[test]
    fn tokens_are_found_by_hash_until_revoked_and_the_log_cannot_be_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        let (token, hash) = new_token();
        let g = Grant {
            id: token_id(&hash),
            role: Role::Force("KENT".into()),
            operations: Some(vec!["OP-1".into()]),
            label: "Kent liaison".into(),
            created_at: 1,
            revoked_at: None,
        };
        s.add_token(&hash, &g).unwrap();
        assert_eq!(s.find_token(&hash_token(&token)).unwrap(), Some(g.clone()));
        assert_eq!(s.find_token(&hash_token("jo_wrong")).unwrap(), None);
        assert!(s.revoke_token(&g.id, 5).unwrap());
        assert_eq!(s.find_token(&hash).unwrap(), None);

        let a = Access {
            seq: 0,
            at: 10,
            token_id: Some(g.id.clone()),
            role: Some("force:KENT".into()),
            method: "GET".into(),
            path: "/api/v1/operations/OP-1/totals".into(),
            operation: Some("OP-1".into()),
            status: 200,
            justification: Some("press briefing".into()),
        };
        s.log_access(&a).unwrap();
        let log = s.access_log(0).unwrap();
        assert_eq!(log, vec![Access { seq: 1, ..a }]);
        let tamper = s.conn.execute("UPDATE access_log SET status = 500", []);
        assert!(tamper.unwrap_err().to_string().contains("append-only"));
        assert!(s.conn.execute("DELETE FROM access_log", []).is_err());
        assert_eq!(s.access_log(0).unwrap().len(), 1);
    }
}
