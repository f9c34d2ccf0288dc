//! `dlq replay`: re-submits dead-lettered records to the input topic once the
//! hub's configuration accepts them (an operation registered late, a window
//! or a force list corrected, a key added) and sends a `wrong-partition`
//! record to its key's partition. The rollup then counts each once (R1).

use futures::stream::{FuturesUnordered, TryStreamExt};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use rdkafka::consumer::BaseConsumer;

use super::record::{self, Checks, Record};
use crate::codec::Registry;
use crate::config::HubSettings;
use crate::domain::{partition_for, Operations, Reason};
use crate::kafka;
use crate::store::{DeadLetter, DeadLetterLog, Position, SqliteStore};
use crate::trust::Keyring;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReplayOutcome {
    /// Re-submitted to the input topic.
    pub replayed: Vec<Position>,
    /// Still refused by the current configuration or contract, with why.
    pub still_refused: Vec<(Position, String, String)>,
    /// A rollup holds the store: it must be restarted with the corrected
    /// configuration, or it refuses the replayed records again.
    pub rollup_running: bool,
}

/// What the current configuration checks a dead letter against.
struct Current {
    operations: Operations,
    keyring: Keyring,
    partitions: i32,
}

/// The partition a record is replayed to: its key's (§3), so that a
/// `wrong-partition` record lands where it counts.
fn home(d: &DeadLetter, partitions: i32) -> Option<i32> {
    d.original.key.as_deref().filter(|k| !k.is_empty()).map(|k| partition_for(k, partitions))
}

/// Would the hub, as configured now, get past the partition, signature,
/// decoding, validation, key and R6 checks with this record once it is on
/// its key's partition? The counting rules (R1, R2) are the rollup's to
/// apply; a conflicting revision stays one, so it is not replayed.
fn check(now: &Current, d: &DeadLetter) -> Result<(), (Reason, String)> {
    if let Some(r @ (Reason::ConflictingRevision | Reason::IdentityChanged)) = Reason::parse(&d.reason) {
        return Err((r, "refused by a counting rule, not by configuration".into()));
    }
    let o = &d.original;
    let headers: Vec<(&str, Option<&[u8]>)> = o.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
    let r = Record {
        topic: &d.topic,
        key: o.key.as_deref(),
        value: o.value.as_deref(),
        headers: &headers,
        partition: home(d, now.partitions).unwrap_or(0),
        partitions: now.partitions,
        offset: d.offset,
        timestamp_ms: d.at,
    };
    let checks = Checks { registry: Registry::builtin(), operations: &now.operations, keyring: &now.keyring };
    record::check(checks, &r).map(|_| ()).map_err(|d| (d.reason, d.detail))
}

/// The input topic's partition count, from the broker.
fn partition_count(settings: &HubSettings) -> anyhow::Result<i32> {
    let k = &settings.kafka;
    let meta: BaseConsumer = kafka::client_config(&k.bootstrap, &[], &k.librdkafka).create()?;
    let n = kafka::partitions(&meta, &k.topic)
        .map_err(|e| anyhow::anyhow!("cannot read the partitions of {:?} on {}: {e}", k.topic, k.bootstrap))?
        .len();
    Ok(n as i32)
}

pub async fn replay(settings: &HubSettings, reason: Option<&str>, dry_run: bool) -> anyhow::Result<ReplayOutcome> {
    let k = &settings.kafka;
    anyhow::ensure!(settings.store.path.exists(), "no store at {}", settings.store.path.display());
    let mut store = SqliteStore::open(&settings.store.path)?;
    let now = Current {
        operations: settings.operations().map_err(anyhow::Error::msg)?,
        keyring: settings.keyring().map_err(anyhow::Error::msg)?,
        partitions: partition_count(settings)?,
    };
    let mut outcome = ReplayOutcome::default();
    let mut ready = Vec::new();
    for d in store.dead_letters(reason)? {
        if d.replayed || d.topic != k.topic {
            continue;
        }
        let pos = (d.topic.clone(), d.partition, d.offset);
        match check(&now, &d) {
            Ok(()) => ready.push(d),
            Err((r, detail)) => outcome.still_refused.push((pos, r.code().to_string(), detail)),
        }
    }
    // A running rollup checks replayed records against the configuration
    // it started with, and would refuse them again.
    outcome.rollup_running = super::try_lock(&settings.store.path)?.is_none();
    if !dry_run && !ready.is_empty() {
        let producer: FutureProducer =
            kafka::client_config(&k.bootstrap, kafka::PRODUCER_DEFAULTS, &k.librdkafka).create()?;
        let sends: FuturesUnordered<_> =
            ready.iter().map(|d| send(&producer, &k.topic, home(d, now.partitions), d)).collect();
        sends.try_collect::<Vec<()>>().await?;
        let positions: Vec<Position> = ready.iter().map(|d| (d.topic.clone(), d.partition, d.offset)).collect();
        store.mark_replayed(&positions)?;
    }
    outcome.replayed = ready.into_iter().map(|d| (d.topic, d.partition, d.offset)).collect();
    Ok(outcome)
}

/// Sends the original to `partition` explicitly: the producer's own
/// partitioner is not trusted to agree with §3.
async fn send(producer: &FutureProducer, topic: &str, partition: Option<i32>, d: &DeadLetter) -> anyhow::Result<()> {
    let mut headers = OwnedHeaders::new();
    for (key, value) in &d.original.headers {
        headers = headers.insert(Header { key, value: value.as_deref() });
    }
    let from = format!("{}/{}/{}", d.topic, d.partition, d.offset);
    headers = headers.insert(Header { key: "jointops-replay-of", value: Some(from.as_bytes()) });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    if let Some(k) = &d.original.key {
        record = record.key(k.as_slice());
    }
    if let Some(v) = &d.original.value {
        record = record.payload(v.as_slice());
    }
    producer
        .send(record, std::time::Duration::from_secs(60))
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow::anyhow!("replay of {from} not acknowledged: {e}"))
}
