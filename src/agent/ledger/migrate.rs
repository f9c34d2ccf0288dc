//! Converts a ledger of the first layout, a `records` row per record and an
//! `outbox` row per message, into buckets and batches, in one transaction:
//! an agent upgraded in the middle of an operation keeps what it published
//! and what Kafka has not acknowledged yet, and its open `watch` runs.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{params, Connection};

use super::{put_entries, queue, seqs_of, Entry, LedgerError};
use crate::codec::Registry;

pub(super) fn from_rows(conn: &mut Connection, path: &str) -> Result<(), LedgerError> {
    let wrap = |source| LedgerError::Sqlite { path: path.to_string(), source };
    let old: bool = conn
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records')", [], |r| {
            r.get(0)
        })
        .map_err(wrap)?;
    if !old {
        return Ok(());
    }
    let tx = conn.transaction().map_err(wrap)?;
    let (entries, operations) = old_records(&tx, path)?;
    put_entries(&tx, &entries.iter().collect::<Vec<_>>(), path)?;
    for op in &operations {
        tx.execute("INSERT OR IGNORE INTO operations (operation) VALUES (?1)", [op]).map_err(wrap)?;
    }
    let messages: Vec<(i64, String, Vec<u8>)> = {
        let mut st = tx.prepare("SELECT seq, key, value FROM outbox ORDER BY seq").map_err(wrap)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(wrap)?;
        rows.collect::<Result<_, _>>().map_err(wrap)?
    };
    let runs = open_runs(&tx).map_err(wrap)?;
    let mut new_seq: HashMap<i64, i64> = HashMap::new();
    // Each open run's messages in batches of their own, as `accept` queues them.
    let run_of =
        |seq: i64| runs.iter().find(|r| r.1.zip(r.2).is_some_and(|(f, l)| (f..=l).contains(&seq))).map(|r| r.0);
    for group in messages.chunk_by(|a, b| run_of(a.0) == run_of(b.0)) {
        let queued: Vec<(&str, &[u8])> = group.iter().map(|(_, k, v)| (k.as_str(), v.as_slice())).collect();
        let batches = queue(&tx, &queued).map_err(wrap)?;
        new_seq.extend(group.iter().map(|m| m.0).zip(seqs_of(&batches, group.len())));
    }
    remap_runs(&tx, &runs, &new_seq).map_err(wrap)?;
    tx.execute_batch("DROP TABLE records; DROP TABLE outbox;").map_err(wrap)?;
    tx.commit().map_err(wrap)?;
    tracing::info!(ledger = %path, records = entries.len(), outbox = messages.len(), "Ledger converted to buckets and batches.");
    Ok(())
}

/// Every old record as an entry (its reported_at read from its last value),
/// and the operations their identity keys name.
fn old_records(tx: &Connection, path: &str) -> Result<(Vec<Entry>, BTreeSet<String>), LedgerError> {
    let wrap = |source| LedgerError::Sqlite { path: path.to_string(), source };
    let mut st = tx
        .prepare("SELECT record_id, event_id, generation, revision, identity, content, value FROM records")
        .map_err(wrap)?;
    let mut rows = st.query([]).map_err(wrap)?;
    let (mut entries, mut operations) = (Vec::new(), BTreeSet::new());
    while let Some(r) = rows.next().map_err(wrap)? {
        let record_id: String = r.get(0).map_err(wrap)?;
        let identity: String = r.get(4).map_err(wrap)?;
        let value: Vec<u8> = r.get(6).map_err(wrap)?;
        let last = Registry::builtin().decode(&value).map_err(|e| LedgerError::corrupt(&record_id, e))?;
        operations.extend(identity.split('/').next().map(str::to_string));
        entries.push(Entry {
            event_id: r.get(1).map_err(wrap)?,
            generation: r.get(2).map_err(wrap)?,
            revision: r.get(3).map_err(wrap)?,
            reported_at: last.reported_at,
            content: r.get(5).map_err(wrap)?,
            record_id,
        });
    }
    Ok((entries, operations))
}

/// Open runs name their messages by seq: the new seqs of those still in the
/// outbox, or none when all were acknowledged.
type OpenRun = (i64, Option<i64>, Option<i64>);

fn open_runs(tx: &Connection) -> rusqlite::Result<Vec<OpenRun>> {
    let mut st = tx.prepare("SELECT id, first_seq, last_seq FROM runs WHERE state = 'planned'")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

fn remap_runs(tx: &Connection, runs: &[OpenRun], new_seq: &HashMap<i64, i64>) -> rusqlite::Result<()> {
    for &(id, first, last) in runs {
        let (Some(first), Some(last)) = (first, last) else { continue };
        let left: Vec<i64> = (first..=last).filter_map(|s| new_seq.get(&s).copied()).collect();
        let (first, last) = (left.iter().min().copied(), left.iter().max().copied());
        tx.execute("UPDATE runs SET first_seq = ?2, last_seq = ?3 WHERE id = ?1", params![id, first, last])?;
    }
    Ok(())
}
