//! Figures as they were published: who published them, when, for what
//! moment, with a note. Kept in the records file, which no rebuild
//! replaces, and append-only like the access log.

use rusqlite::{params, OptionalExtension};

use super::{RecordsStore, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS publications (
    id           INTEGER PRIMARY KEY,
    operation    TEXT NOT NULL,
    published_at INTEGER NOT NULL,
    published_by TEXT NOT NULL,     -- the token's label and id
    as_of        INTEGER NOT NULL,
    note         TEXT NOT NULL,
    figures      TEXT NOT NULL      -- JSON: totals, forces, provisional, as served
);
CREATE INDEX IF NOT EXISTS publications_by_operation ON publications (operation, id);
CREATE TRIGGER IF NOT EXISTS publications_no_update BEFORE UPDATE ON publications
    BEGIN SELECT RAISE(ABORT, 'publications are append-only'); END;
CREATE TRIGGER IF NOT EXISTS publications_no_delete BEFORE DELETE ON publications
    BEGIN SELECT RAISE(ABORT, 'publications are append-only'); END;
";

/// A published set of figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// Assigned by the store.
    pub id: i64,
    pub operation: String,
    pub published_at: i64,
    pub published_by: String,
    pub as_of: i64,
    pub note: String,
    /// The figures as served, JSON.
    pub figures: String,
}

const COLUMNS: &str = "id, operation, published_at, published_by, as_of, note, figures";

fn publication_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Publication> {
    Ok(Publication {
        id: r.get(0)?,
        operation: r.get(1)?,
        published_at: r.get(2)?,
        published_by: r.get(3)?,
        as_of: r.get(4)?,
        note: r.get(5)?,
        figures: r.get(6)?,
    })
}

impl RecordsStore {
    /// Records `p` (its `id` is ignored) and returns its id.
    pub fn publish(&mut self, p: &Publication) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO publications (operation, published_at, published_by, as_of, note, figures)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![p.operation, p.published_at, p.published_by, p.as_of, p.note, p.figures],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The operation's publications, newest first.
    pub fn publications(&self, operation: &str) -> Result<Vec<Publication>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM publications WHERE operation = ?1 ORDER BY id DESC");
        self.rows(&sql, [operation], publication_of)
    }

    pub fn publication(&self, operation: &str, id: i64) -> Result<Option<Publication>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM publications WHERE operation = ?1 AND id = ?2");
        self.conn.query_row(&sql, params![operation, id], publication_of).optional().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_are_kept_newest_first_per_operation_and_cannot_be_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RecordsStore::open(&dir.path().join("r"), None).unwrap();
        let p = |op: &str, note: &str| Publication {
            id: 0,
            operation: op.into(),
            published_at: 5,
            published_by: "Press office (ab12)".into(),
            as_of: 4,
            note: note.into(),
            figures: "{}".into(),
        };
        let monday = s.publish(&p("OP", "Monday")).unwrap();
        s.publish(&p("OTHER", "x")).unwrap();
        let friday = s.publish(&p("OP", "Friday")).unwrap();
        let notes: Vec<String> = s.publications("OP").unwrap().into_iter().map(|p| p.note).collect();
        assert_eq!(notes, ["Friday", "Monday"]);
        assert_eq!(s.publication("OP", monday).unwrap().map(|p| p.note), Some("Monday".into()));
        assert_eq!(s.publication("OTHER", friday).unwrap(), None, "ids belong to their operation");
        assert!(s.execute_raw("UPDATE publications SET note = 'rewritten'").is_err());
        assert!(s.execute_raw("DELETE FROM publications").is_err());
        drop(s);
        let s = RecordsStore::open(&dir.path().join("r"), None).unwrap();
        assert_eq!(s.publications("OP").unwrap().len(), 2, "kept across opens");
    }
}
