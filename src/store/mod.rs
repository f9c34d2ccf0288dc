//! The rollup's persistent state behind a narrow trait: reports, totals,
//! dead-letter records and consumed offsets, written together in one
//! transaction per batch. SQLite by default; a shared PostgreSQL store can
//! implement the same trait. The hub's own records (tokens, the access log)
//! live in a file of their own ([`records`]), which no rebuild replaces.

mod files;
mod publications;
pub mod records;
mod sqlite;
mod status;

use std::collections::BTreeMap;

pub use files::FileId;
pub use publications::Publication;
pub use records::{Access, AccessStore, ChainCheck, RecordsStore};
pub use sqlite::{day_number, day_text, SqliteStore};
pub use status::{Activity, DeadLetterQuery, Heartbeat, RollupStatus, Tally};

use crate::config::StoreSettings;
use crate::domain::{OperationTotals, OutcomeEvent};

/// The records file named by `[store]`, carrying over what an older store
/// file still holds of tokens and the access log.
pub fn open_records(settings: &StoreSettings) -> Result<RecordsStore, StoreError> {
    RecordsStore::open(&settings.records_path(), Some(&settings.path))
}

/// Runs a query and collects every row; any error names the file.
fn collect_rows<T, C: FromIterator<T>>(
    conn: &rusqlite::Connection,
    path: &str,
    sql: &str,
    params: impl rusqlite::Params,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<C, StoreError> {
    let run = || conn.prepare(sql)?.query_map(params, row)?.collect::<rusqlite::Result<C>>();
    run().map_err(|source| StoreError::Sqlite { path: path.to_string(), source })
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite { path: String, source: rusqlite::Error },
    #[error("store {path}: report {force}/{event_id} cannot be read back: {detail}")]
    Corrupt { path: String, force: String, event_id: String, detail: String },
    #[error("cannot create the store's folder {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A dead-lettered record, as the hub remembers it. The original bytes are
/// kept so that a corrected configuration can replay it, and so that a
/// rebuilt store can send what the old one never sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub detail: String,
    pub force: Option<String>,
    pub event_id: Option<String>,
    /// The operation the record named, when it could be read.
    pub operation: Option<String>,
    /// The record's Kafka timestamp (ms), when it had one.
    pub at: Option<i64>,
    pub original: Original,
    /// Whether it is on the dead-letter topic.
    pub sent: bool,
    /// Whether `dlq replay` has re-submitted it.
    pub replayed: bool,
}

/// The record as it arrived: key, value and headers.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Original {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The first byte of [`Original::to_bytes`]; JSON (the first version's
/// form, 3.6 times the size) starts with `{`.
const ORIGINAL_V2: u8 = 2;

impl Original {
    /// Bytes as they arrived, each part length-prefixed (u32, big-endian;
    /// `u32::MAX` for an absent part).
    pub fn to_bytes(&self) -> Vec<u8> {
        fn part(out: &mut Vec<u8>, p: Option<&[u8]>) {
            match p {
                None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
                Some(b) => {
                    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
        let mut out = vec![ORIGINAL_V2];
        part(&mut out, self.key.as_deref());
        part(&mut out, self.value.as_deref());
        out.extend_from_slice(&(self.headers.len() as u32).to_be_bytes());
        for (k, v) in &self.headers {
            part(&mut out, Some(k.as_bytes()));
            part(&mut out, v.as_deref());
        }
        out
    }

    /// Reads [`Original::to_bytes`], or the first version's JSON.
    pub fn from_bytes(bytes: &[u8]) -> Option<Original> {
        if bytes.first() == Some(&b'{') {
            return serde_json::from_slice(bytes).ok();
        }
        fn number(rest: &mut &[u8]) -> Option<u32> {
            let (n, tail) = rest.split_first_chunk::<4>()?;
            *rest = tail;
            Some(u32::from_be_bytes(*n))
        }
        fn part(rest: &mut &[u8]) -> Option<Option<Vec<u8>>> {
            let n = number(rest)?;
            if n == u32::MAX {
                return Some(None);
            }
            let (b, tail) = rest.split_at_checked(n as usize)?;
            *rest = tail;
            Some(Some(b.to_vec()))
        }
        let (&ORIGINAL_V2, mut rest) = bytes.split_first()? else { return None };
        let key = part(&mut rest)?;
        let value = part(&mut rest)?;
        let count = number(&mut rest)?;
        let mut headers = Vec::new();
        for _ in 0..count {
            let name = String::from_utf8(part(&mut rest)??).ok()?;
            headers.push((name, part(&mut rest)?));
        }
        rest.is_empty().then_some(Original { key, value, headers })
    }
}

/// The position of a record: `(topic, partition, offset)`.
pub type Position = (String, i32, i64);

/// One applied revision and when it reached the topic (its Kafka
/// timestamp): the history behind as-of figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRow {
    pub force: String,
    pub event_id: String,
    pub revision: i32,
    pub operation: String,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// Single-object encoding of the revision.
    pub value: Vec<u8>,
}

/// A report's new state, as a batch writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub event: OutcomeEvent,
    /// Its identity key (§3), built once when the record was checked.
    pub identity: String,
    /// Its single-object encoding.
    pub value: Vec<u8>,
}

/// Everything one batch changes, committed atomically.
#[derive(Default, Debug)]
pub struct Batch {
    /// Reports whose state changed, each once, with its latest state.
    pub reports: Vec<ReportRow>,
    /// Every revision applied in the batch, in order.
    pub history: Vec<HistoryRow>,
    /// The full totals of every operation the batch touched.
    pub totals: Vec<(String, OperationTotals)>,
    pub dead_letters: Vec<DeadLetter>,
    /// `(topic, partition, next offset to read)`.
    pub offsets: Vec<(String, i32, i64)>,
    /// Per operation and force: reports first counted in this batch, and
    /// the newest Kafka timestamp of a revision counted.
    pub activity: Vec<Activity>,
    /// When the batch was committed (ms, the hub's clock).
    pub committed_at: i64,
}

/// What the rollup needs from a store.
pub trait Store {
    /// The encoded current state of every report, to rebuild the engine.
    fn reports(&self) -> Result<Vec<(String, String, Vec<u8>)>, StoreError>;
    /// The next offset to read for each partition of `topic`.
    fn offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>, StoreError>;
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
    /// The rollup's sign of life, written every few seconds while it runs,
    /// so that readers can tell a stopped rollup from a quiet topic.
    fn heartbeat(&mut self, beat: &Heartbeat) -> Result<(), StoreError>;
    /// Finishes with a store that nobody else has open, leaving it
    /// self-contained (for SQLite: the WAL folded in, no `-wal` file), so
    /// that a rebuilt store can be renamed into place.
    fn seal(self: Box<Self>) -> Result<(), StoreError>;
}

/// What readers (report, API) need from a store.
pub trait TotalsReader {
    fn totals(&self, operation: &str) -> Result<Option<OperationTotals>, StoreError>;
    /// Dead-lettered records of the whole hub not (yet) replayed, by reason code.
    fn dead_letter_counts(&self) -> Result<BTreeMap<String, i64>, StoreError>;
    /// Every revision of `operation` that reached the topic at or before
    /// `at` (ms), encoded: the input of as-of totals.
    fn history_until(&self, operation: &str, at: i64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// A number that changes whenever the totals may have changed.
    fn version(&self) -> Result<i64, StoreError>;
    /// The last heartbeat and commit of the rollup, if one ever ran.
    fn rollup_status(&self) -> Result<Option<RollupStatus>, StoreError>;
    /// What each force has had counted in `operation`.
    fn activity(&self, operation: &str) -> Result<Vec<Activity>, StoreError>;
    /// Outstanding (not replayed) dead letters matching `q`, counted by
    /// operation, force and reason.
    fn dead_letter_tally(&self, q: &DeadLetterQuery<'_>) -> Result<Vec<Tally>, StoreError>;
    /// Hands each outstanding dead letter matching `q` to `f`, without its
    /// original bytes, in source order, until `f` returns false.
    fn each_outstanding(
        &self,
        q: &DeadLetterQuery<'_>,
        f: &mut dyn FnMut(DeadLetter) -> bool,
    ) -> Result<(), StoreError>;
}

/// The dead-letter log, for `dlq list`, `dlq replay` and rebuilds.
pub trait DeadLetterLog {
    /// All dead letters, or those of one reason, in source order.
    fn dead_letters(&self, reason: Option<&str>) -> Result<Vec<DeadLetter>, StoreError> {
        let mut out = Vec::new();
        self.each_dead_letter(reason, true, &mut |d| {
            out.push(d);
            true
        })?;
        Ok(out)
    }
    /// Hands each dead letter to `f`, in source order, until it returns
    /// false: a listing never holds the whole log. Without `originals` the
    /// original bytes are not read (they stay empty).
    fn each_dead_letter(
        &self,
        reason: Option<&str>,
        originals: bool,
        f: &mut dyn FnMut(DeadLetter) -> bool,
    ) -> Result<(), StoreError>;
    fn mark_sent(&mut self, positions: &[Position]) -> Result<(), StoreError>;
    fn mark_replayed(&mut self, positions: &[Position]) -> Result<(), StoreError>;
}
