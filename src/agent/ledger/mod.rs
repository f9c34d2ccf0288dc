//! The agent's ledger (what it published for each `record_id`) and outbox
//! (what Kafka has not acknowledged yet), in one SQLite file in `state_dir`.
//! A plan is written to both in one transaction before anything is sent, so
//! a crash between send and acknowledgement resends the same bytes, which
//! the hub absorbs as duplicates (R1).
//!
//! Records live in buckets by a hash of their id, and outbox messages in
//! batches (`blobs.rs`): a SQLite row costs the same whatever it holds, so a
//! row per record and per message made the ledger the agent's bottleneck.
//! A ledger of the first layout (a row each) is converted when opened
//! (`migrate.rs`).
//!
//! The `runs` table remembers what each file picked up by `agent watch` gave
//! when it was planned (in that same transaction), so that a file planned
//! before a crash gets the same receipt after it.
//!
//! The `secrets` table holds a fingerprint of each operation's
//! pseudonymisation secret (never the secret), so that a changed secret is
//! noticed before it re-keys every joint outcome.

mod blobs;
mod migrate;
mod runs;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

pub use self::blobs::bucket_of;
use self::blobs::{batch_of, PER_BATCH};
pub use self::runs::{NewRun, Run, RunState};
use crate::codec::{binary, Registry};
use crate::domain::OutcomeEvent;

/// Messages per outbox batch, as sent and acknowledged at a time.
pub(crate) const BATCH: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("agent ledger {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("agent ledger {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("agent ledger: the last value of record {record_id:?} cannot be read back: {detail}")]
    Corrupt { record_id: String, detail: String },
    #[error("agent ledger {path}: {what} cannot be read back ({detail}); the ledger is damaged: keep a copy of {path} and ask for help before you publish from it again")]
    Damaged { path: String, what: String, detail: String },
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

/// What the ledger remembers of one record: enough to tell an unchanged row,
/// to withdraw the last revision, and to send it again byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub record_id: String,
    pub event_id: String,
    /// 1 while `event_id == record_id`; the suffix after an identity change.
    pub generation: i64,
    pub revision: i32,
    pub reported_at: i64,
    /// Canonical bytes of everything but event id, revision and reported_at
    /// (the Avro datum with those blanked): the rest of the last revision.
    pub content: Vec<u8>,
}

impl Entry {
    /// The event id of a record's `generation`: the record id, then `id:2`, `id:3`…
    pub fn event_id_of(record_id: &str, generation: i64) -> String {
        if generation <= 1 {
            record_id.to_string()
        } else {
            format!("{record_id}:{generation}")
        }
    }

    /// The last revision published, as it was.
    pub fn event(&self) -> Result<OutcomeEvent, LedgerError> {
        let mut e = binary::decode(&self.content).map_err(|e| LedgerError::corrupt(&self.record_id, e))?;
        (e.event_id, e.revision, e.reported_at) = (self.event_id.clone(), self.revision, self.reported_at);
        Ok(e)
    }
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

/// FULL: an accepted row must survive a power cut. EXCLUSIVE: two agents on
/// one ledger would hand out the same revision twice. A rollback journal,
/// not a WAL: nothing reads the ledger beside its one connection, and the
/// outbox's batches go to new or free pages, which a rollback journal need
/// not copy, where a WAL writes every page twice (into the log, then back
/// at the checkpoint); `bench-agent.sh` 200000 took a tenth less time. A 16 MiB cache holds
/// the pages of a few batches: a large file is recorded a batch at a time
/// (`publish`), and a bigger cache only cost the memory it touched.
const SCHEMA: &str = "PRAGMA journal_mode=TRUNCATE; PRAGMA synchronous=FULL; PRAGMA locking_mode=EXCLUSIVE;
     PRAGMA cache_size=-16384;
     CREATE TABLE IF NOT EXISTS buckets (bucket INTEGER PRIMARY KEY, records BLOB NOT NULL);
     CREATE TABLE IF NOT EXISTS batches (
         seq INTEGER PRIMARY KEY AUTOINCREMENT, size INTEGER NOT NULL, count INTEGER NOT NULL,
         messages BLOB NOT NULL);
     CREATE TABLE IF NOT EXISTS operations (operation TEXT PRIMARY KEY) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS runs (
         id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL, sha256 TEXT NOT NULL,
         summary TEXT NOT NULL, first_seq INTEGER, last_seq INTEGER, dest TEXT,
         state TEXT NOT NULL, planned_at INTEGER NOT NULL, finished_at INTEGER);
     CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, source);
     CREATE TABLE IF NOT EXISTS secrets (
         operation TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, recorded_at INTEGER NOT NULL);
     BEGIN EXCLUSIVE; COMMIT;";

impl Ledger {
    pub fn open(state_dir: &Path) -> Result<Self, LedgerError> {
        let file = state_dir.join("ledger.sqlite");
        let path = file.display().to_string();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        crate::private::dir(state_dir)
            .map_err(|source| LedgerError::Io { path: state_dir.display().to_string(), source })?;
        let lock = lock(state_dir)?;
        crate::private::sqlite(&file).map_err(|source| LedgerError::Io { path: path.clone(), source })?;
        let mut conn = Connection::open(&file).map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        migrate::from_rows(&mut conn, &path)?;
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

    /// What the ledger holds for one record.
    pub fn get(&self, record_id: &str) -> Result<Option<Entry>, LedgerError> {
        Ok(self.lookup(&[record_id])?.pop().flatten().map(|e| *e))
    }

    /// What the ledger holds for each of `record_ids`, in their order,
    /// reading each bucket once: a plan asks for every row of its file at
    /// once. Boxed: in a new export most are none, and a none is a pointer.
    pub fn lookup(&self, record_ids: &[&str]) -> Result<Vec<Option<Box<Entry>>>, LedgerError> {
        let mut order: Vec<(u32, usize)> = record_ids.iter().enumerate().map(|(i, id)| (bucket_of(id), i)).collect();
        order.sort_unstable();
        let mut found: Vec<Option<Box<Entry>>> = vec![None; record_ids.len()];
        let mut st =
            self.conn.prepare_cached("SELECT records FROM buckets WHERE bucket = ?1").map_err(|e| self.err(e))?;
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let blob: Option<Vec<u8>> = st.query_row([group[0].0], |r| r.get(0)).optional().map_err(|e| self.err(e))?;
            let Some(blob) = blob else { continue };
            let mut held: Vec<Option<Box<Entry>>> =
                read_bucket(&self.path, group[0].0, &blob)?.into_iter().map(|e| Some(Box::new(e))).collect();
            let at: foldhash::HashMap<String, usize> =
                held.iter().flatten().enumerate().map(|(j, e)| (e.record_id.clone(), j)).collect();
            for &(_, i) in group {
                if let Some(&j) = at.get(record_ids[i]) {
                    // Moved out once; an id asked for twice gets a copy.
                    let twice =
                        || group.iter().find_map(|&(_, k)| found[k].clone().filter(|_| record_ids[k] == record_ids[i]));
                    found[i] = held[j].take().or_else(twice);
                }
            }
        }
        Ok(found)
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
        let state_dir = self.state_dir.clone();
        let tx = self.conn.transaction().map_err(wrap)?;
        // Counted inside the transaction: the ledger is locked exclusively,
        // so nothing can slip in between the count and the inserts.
        let current = count_outbox(&tx).map_err(wrap)?;
        room(&state_dir, file, current, messages.len() as u64, spool_limit)?;
        let (entries, messages): (Vec<&Entry>, Vec<&(String, Vec<u8>)>) =
            (entries.iter().collect(), messages.iter().collect());
        let batches = write_plan(&tx, &entries, &messages, &path)?;
        let seqs = seqs_of(&batches, messages.len()).next().zip(seqs_of(&batches, messages.len()).last());
        let id = match run {
            None => None,
            Some(r) => {
                tx.execute(
                    "INSERT INTO runs (source, sha256, summary, first_seq, last_seq, state, planned_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'planned', ?6)",
                    params![r.source, r.sha256, r.summary, seqs.map(|s| s.0), seqs.map(|s| s.1), r.planned_at],
                )
                .map_err(wrap)?;
                Some(tx.last_insert_rowid())
            }
        };
        tx.commit().map_err(wrap)?;
        Ok(id)
    }

    /// Refuses a file whose `adding` messages would take the outbox over
    /// `spool_limit`, as [`Ledger::accept`] does.
    pub fn check_room(&self, file: &str, adding: u64, spool_limit: u64) -> Result<(), LedgerError> {
        room(&self.state_dir, file, self.outbox_len()?, adding, spool_limit)
    }

    /// Records part of a plan (entries with exactly their messages) in one
    /// transaction, and returns the messages' seqs, to send them at once.
    pub fn record_part(
        &mut self,
        entries: &[&Entry],
        messages: &[&(String, Vec<u8>)],
    ) -> Result<Vec<i64>, LedgerError> {
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        let batches = write_plan(&tx, entries, messages, &path)?;
        tx.commit().map_err(wrap)?;
        Ok(seqs_of(&batches, messages.len()).collect())
    }

    /// Messages in the outbox (not yet acknowledged by Kafka).
    pub fn outbox_len(&self) -> Result<u64, LedgerError> {
        count_outbox(&self.conn).map_err(|e| self.err(e))
    }

    /// Records the ledger knows.
    pub fn records_len(&self) -> Result<u64, LedgerError> {
        let mut n = 0;
        self.each_bucket(|_, entries| n += entries.len() as u64)?;
        Ok(n)
    }

    fn each_bucket(&self, mut f: impl FnMut(u32, Vec<Entry>)) -> Result<(), LedgerError> {
        let mut st =
            self.conn.prepare("SELECT bucket, records FROM buckets ORDER BY bucket").map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let (bucket, blob): (u32, Vec<u8>) =
                (row.get(0).map_err(|e| self.err(e))?, row.get(1).map_err(|e| self.err(e))?);
            f(bucket, read_bucket(&self.path, bucket, &blob)?);
        }
        Ok(())
    }

    /// The unacknowledged messages of the batches after the one holding
    /// `after` (a seq; 0 for all), oldest first: whole batches, at least
    /// `limit` messages when there are that many. Callers pass the last seq
    /// they were given, so a batch is read once per attempt.
    pub fn pending_after(&self, after: i64, limit: usize) -> Result<Vec<Outgoing>, LedgerError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT seq, messages FROM batches WHERE seq > ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([batch_of(after)]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(row) = rows.next().map_err(|e| self.err(e))? else { break };
            let (seq, blob): (i64, Vec<u8>) =
                (row.get(0).map_err(|e| self.err(e))?, row.get(1).map_err(|e| self.err(e))?);
            let messages = blobs::decode_batch(seq, &blob).map_err(|d| self.corrupt_batch(seq, d))?;
            out.extend(messages);
        }
        Ok(out)
    }

    fn corrupt_batch(&self, seq: i64, detail: String) -> LedgerError {
        damaged(&self.path, format!("outbox batch {seq}"), detail)
    }

    /// Messages not yet acknowledged, oldest first.
    pub fn pending(&self) -> Result<Vec<Outgoing>, LedgerError> {
        self.pending_after(0, usize::MAX)
    }

    /// Forgets acknowledged messages; returns how many it forgot. A batch
    /// acknowledged whole goes at once; one acknowledged in part is kept with
    /// the rest of its messages.
    pub fn acknowledge(&mut self, seqs: &[i64]) -> Result<u64, LedgerError> {
        let mut by_batch: BTreeMap<i64, HashSet<i64>> = BTreeMap::new();
        for &s in seqs {
            by_batch.entry(batch_of(s)).or_default().insert(s);
        }
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        let mut forgot = 0;
        for (batch, acked) in by_batch {
            let row: Option<(i64, i64)> = tx
                .query_row("SELECT size, count FROM batches WHERE seq = ?1", [batch], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(wrap)?;
            let Some((size, count)) = row else { continue };
            // Never acknowledged in part, and every one of its seqs now: no need to read it.
            let first = batch * PER_BATCH;
            if count == size && acked.len() as i64 == size && acked.iter().all(|s| (first..first + size).contains(s)) {
                tx.execute("DELETE FROM batches WHERE seq = ?1", [batch]).map_err(wrap)?;
                forgot += size as u64;
                continue;
            }
            let blob: Vec<u8> =
                tx.query_row("SELECT messages FROM batches WHERE seq = ?1", [batch], |r| r.get(0)).map_err(wrap)?;
            let messages =
                blobs::decode_batch(batch, &blob).map_err(|d| damaged(&path, format!("outbox batch {batch}"), d))?;
            let (gone, kept): (Vec<Outgoing>, Vec<Outgoing>) =
                messages.into_iter().partition(|m| acked.contains(&m.seq));
            forgot += gone.len() as u64;
            if kept.is_empty() {
                tx.execute("DELETE FROM batches WHERE seq = ?1", [batch]).map_err(wrap)?;
            } else if !gone.is_empty() {
                let blob = blobs::encode_batch(
                    kept.iter().map(|m| ((m.seq - batch * PER_BATCH) as u32, m.key.as_str(), m.value.as_slice())),
                );
                tx.execute(
                    "UPDATE batches SET count = ?2, messages = ?3 WHERE seq = ?1",
                    params![batch, kept.len() as i64, blob],
                )
                .map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)?;
        Ok(forgot)
    }

    /// Queues the last published value of every record again (`agent resend`).
    pub fn requeue_all(&mut self) -> Result<usize, LedgerError> {
        let registry = Registry::builtin();
        let mut all: Vec<Entry> = Vec::new();
        self.each_bucket(|_, entries| all.extend(entries))?;
        all.sort_unstable_by(|a, b| a.record_id.cmp(&b.record_id));
        let mut messages = Vec::with_capacity(all.len());
        for e in &all {
            let event = e.event()?;
            messages.push((event.identity_key(), registry.encode(&event)));
        }
        let path = self.path.clone();
        let wrap = |source| LedgerError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(wrap)?;
        let queued: Vec<(&str, &[u8])> = messages.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        queue(&tx, &queued).map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        Ok(messages.len())
    }

    /// Whether any record of `operation` was published from this ledger.
    pub fn knows_operation(&self, operation: &str) -> Result<bool, LedgerError> {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM operations WHERE operation = ?1)", [operation], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

/// Refuses `adding` messages that would take an outbox of `current` over `spool_limit`.
fn room(state_dir: &Path, file: &str, current: u64, adding: u64, spool_limit: u64) -> Result<(), LedgerError> {
    if adding > 0 && current.saturating_add(adding) > spool_limit {
        return Err(LedgerError::SpoolFull {
            file: file.to_string(),
            state_dir: state_dir.display().to_string(),
            limit: spool_limit,
            current,
            adding,
        });
    }
    Ok(())
}

fn damaged(path: &str, what: String, detail: String) -> LedgerError {
    LedgerError::Damaged { path: path.to_string(), what, detail }
}

fn read_bucket(path: &str, bucket: u32, blob: &[u8]) -> Result<Vec<Entry>, LedgerError> {
    blobs::decode_bucket(blob).map_err(|d| damaged(path, format!("record bucket {bucket}"), d))
}

fn count_outbox(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT COALESCE(SUM(count), 0) FROM batches", [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

/// Writes a plan's entries and queues its messages, and notes the
/// operations they publish for; returns the batches' seqs.
fn write_plan(
    tx: &Transaction<'_>,
    entries: &[&Entry],
    messages: &[&(String, Vec<u8>)],
    path: &str,
) -> Result<Vec<i64>, LedgerError> {
    let wrap = |source| LedgerError::Sqlite { path: path.to_string(), source };
    put_entries(tx, entries, path)?;
    let queued: Vec<(&str, &[u8])> = messages.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
    let batches = queue(tx, &queued).map_err(wrap)?;
    let mut known = tx.prepare_cached("INSERT OR IGNORE INTO operations (operation) VALUES (?1)").map_err(wrap)?;
    // Every key starts with its operation (contract §3); a file has few.
    let mut operations: Vec<&str> = Vec::new();
    for (key, _) in messages {
        let op = key.split('/').next().unwrap_or_default();
        if !operations.contains(&op) {
            operations.push(op);
        }
    }
    for op in operations {
        known.execute([op]).map_err(wrap)?;
    }
    Ok(batches)
}

/// Writes `entries` into their buckets, each bucket read and written once,
/// in bucket order (each write then lands beside the one before).
fn put_entries(tx: &Transaction<'_>, entries: &[&Entry], path: &str) -> Result<(), LedgerError> {
    let wrap = |source| LedgerError::Sqlite { path: path.to_string(), source };
    let mut by_bucket: BTreeMap<u32, Vec<&Entry>> = BTreeMap::new();
    for &e in entries {
        by_bucket.entry(bucket_of(&e.record_id)).or_default().push(e);
    }
    let mut get = tx.prepare_cached("SELECT records FROM buckets WHERE bucket = ?1").map_err(wrap)?;
    let mut put =
        tx.prepare_cached("INSERT OR REPLACE INTO buckets (bucket, records) VALUES (?1, ?2)").map_err(wrap)?;
    for (bucket, new) in by_bucket {
        let blob: Option<Vec<u8>> = get.query_row([bucket], |r| r.get(0)).optional().map_err(wrap)?;
        let held = match blob {
            Some(b) => read_bucket(path, bucket, &b)?,
            None => Vec::new(),
        };
        // The bucket's other records as they were, then the new ones.
        let replaced: HashSet<&str> =
            if held.is_empty() { HashSet::new() } else { new.iter().map(|e| e.record_id.as_str()).collect() };
        let kept = held.iter().filter(|e| !replaced.contains(e.record_id.as_str()));
        let blob = blobs::encode_bucket(kept.chain(new.iter().copied()));
        put.execute(params![bucket, blob]).map_err(wrap)?;
    }
    Ok(())
}

/// Queues messages in batches of [`BATCH`]; returns each batch's seq.
fn queue(tx: &Transaction<'_>, messages: &[(&str, &[u8])]) -> rusqlite::Result<Vec<i64>> {
    // `size` is what it was queued with, `count` what is left of it.
    let mut put = tx.prepare_cached("INSERT INTO batches (size, count, messages) VALUES (?1, ?1, ?2)")?;
    let mut batches = Vec::new();
    for chunk in messages.chunks(BATCH) {
        let blob = blobs::encode_batch(chunk.iter().enumerate().map(|(i, (k, v))| (i as u32, *k, *v)));
        batches.push(put.insert(params![chunk.len() as i64, blob])?);
    }
    Ok(batches)
}

/// The seq of each of `n` messages queued into `batches`, in order.
fn seqs_of(batches: &[i64], n: usize) -> impl Iterator<Item = i64> + '_ {
    (0..n).map(move |i| batches[i / BATCH] * PER_BATCH + (i % BATCH) as i64)
}
