//! `dlq replay`: re-submits dead-lettered records to the input topic once the
//! hub's configuration accepts them (an operation registered late, a window
//! or a force list corrected). The rollup then counts each once (R1).

use futures::stream::{FuturesUnordered, TryStreamExt};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::codec::Registry;
use crate::config::HubSettings;
use crate::domain::Reason;
use crate::kafka;
use crate::store::{DeadLetter, DeadLetterLog, Position, SqliteStore};

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

/// Would the hub, as configured now, get past decoding, validation, the key
/// and R6 with this record? The counting rules (R1, R2) are the rollup's to
/// apply; a conflicting revision stays one, so it is not replayed.
fn check(settings: &HubSettings, d: &DeadLetter) -> Result<(), (Reason, String)> {
    if matches!(Reason::parse(&d.reason), Some(Reason::ConflictingRevision | Reason::IdentityChanged)) {
        return Err((
            Reason::parse(&d.reason).expect("matched"),
            "refused by a counting rule, not by configuration".into(),
        ));
    }
    let event = Registry::builtin()
        .decode(d.original.value.as_deref().unwrap_or_default())
        .map_err(|e| (e.reason(), e.to_string()))?;
    event.validate().map_err(|e| (Reason::Invalid, e.to_string()))?;
    if d.original.key.as_deref() != Some(event.identity_key().as_bytes()) {
        return Err((Reason::KeyMismatch, format!("the identity key is {:?}", event.identity_key())));
    }
    let operations = settings.operations().map_err(|e| (Reason::UnknownOperation, e))?;
    operations.check(&event)
}

pub async fn replay(settings: &HubSettings, reason: Option<&str>, dry_run: bool) -> anyhow::Result<ReplayOutcome> {
    let k = &settings.kafka;
    anyhow::ensure!(settings.store.path.exists(), "no store at {}", settings.store.path.display());
    let mut store = SqliteStore::open(&settings.store.path)?;
    let mut outcome = ReplayOutcome::default();
    let mut ready = Vec::new();
    for d in store.dead_letters(reason)? {
        if d.replayed || d.topic != k.topic {
            continue;
        }
        let pos = (d.topic.clone(), d.partition, d.offset);
        match check(settings, &d) {
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
        let sends: FuturesUnordered<_> = ready.iter().map(|d| send(&producer, &k.topic, d)).collect();
        sends.try_collect::<Vec<()>>().await?;
        let positions: Vec<Position> = ready.iter().map(|d| (d.topic.clone(), d.partition, d.offset)).collect();
        store.mark_replayed(&positions)?;
    }
    outcome.replayed = ready.into_iter().map(|d| (d.topic, d.partition, d.offset)).collect();
    Ok(outcome)
}

async fn send(producer: &FutureProducer, topic: &str, d: &DeadLetter) -> anyhow::Result<()> {
    let mut headers = OwnedHeaders::new();
    for (key, value) in &d.original.headers {
        headers = headers.insert(Header { key, value: value.as_deref() });
    }
    let from = format!("{}/{}/{}", d.topic, d.partition, d.offset);
    headers = headers.insert(Header { key: "jointops-replay-of", value: Some(from.as_bytes()) });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
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
