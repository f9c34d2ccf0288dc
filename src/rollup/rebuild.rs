//! `rollup --rebuild`: a fresh store filled from the beginning of the topic
//! beside the live one, swapped in once it has caught up and the live rollup
//! has stopped. This is how a hub recovers a lost store or applies a
//! corrected configuration (an operation registered late, a window fixed).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rdkafka::consumer::BaseConsumer;
use tracing::info;

use super::{dlq, try_lock, Rollup};
use crate::kafka;
use crate::private::with_suffix;
use crate::store::{DeadLetter, DeadLetterLog, Position, SqliteStore, Store};

pub struct Target {
    pub new_path: PathBuf,
    final_path: PathBuf,
    said_waiting: bool,
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// SQLite keeps `-wal` and `-shm` files beside a database in WAL mode.
fn remove_sqlite_files(path: &Path) -> std::io::Result<()> {
    remove_if_present(path)?;
    remove_if_present(&with_suffix(path, "-wal"))?;
    remove_if_present(&with_suffix(path, "-shm"))
}

impl Target {
    /// A fresh `<store>.rebuild` beside the store: a leftover from an
    /// interrupted rebuild is discarded, since the replay starts over.
    pub fn prepare(store: &Path) -> anyhow::Result<Target> {
        let new_path = with_suffix(store, ".rebuild");
        remove_sqlite_files(&new_path)?;
        info!(store = %store.display(), rebuild = %new_path.display(), "Rebuilding the store from the beginning of the topic.");
        Ok(Target { new_path, final_path: store.to_path_buf(), said_waiting: false })
    }
}

fn position(d: &DeadLetter) -> Position {
    (d.topic.clone(), d.partition, d.offset)
}

/// Swaps the rebuilt store in if it has caught up and the live rollup is
/// gone; `Some(target)` means "not yet, ask again later".
pub async fn try_swap(r: &mut Rollup<'_>, meta: &BaseConsumer, mut target: Target) -> anyhow::Result<Option<Target>> {
    let topic = &r.settings.kafka.topic;
    let high = kafka::high_watermarks(meta, topic)?;
    let stored = r.store.offsets(topic)?;
    if high.iter().any(|(p, &h)| stored.get(p).copied().unwrap_or(0) < h) {
        return Ok(Some(target));
    }
    let Some(lock) = try_lock(&target.final_path)? else {
        if !target.said_waiting {
            info!(store = %target.final_path.display(), "Rebuild caught up; it takes over once the running rollup stops.");
            target.said_waiting = true;
        }
        return Ok(Some(target));
    };

    // Dead letters the live store never had (new records, or ones the
    // corrected configuration refuses) go to the dead-letter topic now.
    let old: HashSet<Position> = if target.final_path.exists() {
        let mut seen = HashSet::new();
        SqliteStore::open_read(&target.final_path)?.each_dead_letter(None, false, &mut |d| {
            seen.insert(position(&d));
            true
        })?;
        seen
    } else {
        HashSet::new()
    };
    let mut log = SqliteStore::open(&target.new_path)?;
    let unsent: Vec<DeadLetter> = log.dead_letters(None)?.into_iter().filter(|d| !d.sent).collect();
    let k = &r.settings.kafka;
    let new = unsent.iter().filter(|d| !old.contains(&position(d)));
    let refused = dlq::send_all(&r.producer, &k.dlq_topic, dlq::max_bytes(&k.librdkafka), new).await?;
    log.mark_sent(&unsent.iter().map(position).filter(|p| !refused.contains(p)).collect::<Vec<_>>())?;
    drop(log);

    let rebuilt = std::mem::replace(&mut r.store, Box::new(SqliteStore::open(Path::new(":memory:"))?));
    rebuilt.seal()?;
    // Fold the old store's WAL in (nobody writes it: we hold the lock), so no
    // stale `-wal` is left to pair with the new file; then replace it in one
    // rename, so that a reader opens either the old store or the new one.
    if let Ok(old) = SqliteStore::open(&target.final_path) {
        let _ = Box::new(old).seal();
    }
    // A store from before the records file was split off still holds the
    // hub's tokens and access log: carry them over before it goes.
    crate::store::open_records(&r.settings.store)?;
    remove_if_present(&with_suffix(&target.final_path, "-wal"))?;
    remove_if_present(&with_suffix(&target.final_path, "-shm"))?;
    std::fs::rename(&target.new_path, &target.final_path)?;
    r.store = Box::new(SqliteStore::open(&target.final_path)?);
    r.send_dead_letters = true;
    r.lock = Some(lock);
    info!(store = %target.final_path.display(), reports = r.engine.report_count(), "Rebuilt store swapped in; going on as the live rollup.");
    Ok(None)
}
