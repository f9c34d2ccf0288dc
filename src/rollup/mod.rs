//! The hub's rollup: consumes the input topic, classifies each record, sends
//! bad ones to the dead-letter topic, and persists state changes together
//! with the consumed offsets in one store transaction per batch.

pub mod classify;
mod dlq;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::codec::Registry;
use crate::config::HubSettings;
use crate::domain::{Engine, Operations};
use crate::kafka;
use crate::store::{Batch, DeadLetter, Store};
use classify::{classify, Incoming, Verdict};

/// Counters of one run, for the closing log line and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub consumed: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub dead_lettered: u64,
    pub batches: u64,
}

/// What the current batch holds until it is committed.
#[derive(Default)]
struct Pending {
    events: usize,
    changed: HashSet<(String, String)>,
    operations: BTreeSet<String>,
    dead: Vec<(DeadLetter, dlq::Original)>,
    offsets: BTreeMap<i32, i64>,
}

/// Rebuilds the engine from the store's reports (the state is a set, so the
/// order does not matter).
pub fn load_engine(store: &dyn Store, registry: &Registry) -> anyhow::Result<Engine> {
    let mut engine = Engine::new();
    for (force, event_id, value) in store.reports()? {
        let event = registry.decode(&value).map_err(|e| {
            anyhow::anyhow!("stored report {force}/{event_id} cannot be decoded: {e}; rebuild the store from the topic")
        })?;
        engine.apply(event).map_err(|e| anyhow::anyhow!("stored report {force}/{event_id}: {e}"))?;
    }
    Ok(engine)
}

/// Runs until `shutdown` resolves, then commits what it has and returns.
pub async fn run(
    settings: &HubSettings,
    mut store: Box<dyn Store + Send>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Stats> {
    let registry = Registry::builtin();
    let operations: Operations = settings.operations().map_err(anyhow::Error::msg)?;
    let k = &settings.kafka;
    let started = Instant::now();
    let mut engine = load_engine(store.as_ref(), registry)?;
    info!(
        reports = engine.report_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "State loaded from the store."
    );

    let base = kafka::client_config(&k.bootstrap, &[], &k.librdkafka);
    kafka::ensure_topics(&base, &[&k.topic, &k.dlq_topic], k.partitions).await?;
    let consumer: StreamConsumer = kafka::client_config(
        &k.bootstrap,
        &[
            ("group.id", &k.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
        ],
        &k.librdkafka,
    )
    .create()?;
    let producer: FutureProducer =
        kafka::client_config(&k.bootstrap, kafka::PRODUCER_DEFAULTS, &k.librdkafka).create()?;

    // Resume from the store's offsets, never the group's: the store's are the
    // ones that match its state.
    let stored = store.offsets(&k.topic)?;
    let meta: BaseConsumer = kafka::client_config(&k.bootstrap, &[], &k.librdkafka).create()?;
    let partitions = kafka::partitions(&meta, &k.topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let offset = stored.get(p).map_or(Offset::Beginning, |&n| Offset::Offset(n));
        tpl.add_partition_offset(&k.topic, *p, offset)?;
    }
    consumer.assign(&tpl)?;
    info!(topic = %k.topic, partitions = partitions.len(), resumed = stored.len(), "Rollup consuming.");

    let mut stats = Stats::default();
    let mut pending = Pending::default();
    let batch_wait = Duration::from_millis(settings.rollup.batch_ms);
    let mut flush_at = tokio::time::Instant::now() + batch_wait;
    let mut last_log = Instant::now();
    let mut since_log = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(flush_at), if pending.events > 0 => {
                flush(settings, &mut engine, store.as_mut(), &producer, &consumer, &mut pending, &mut stats).await?;
            }
            received = consumer.recv() => match received {
                Ok(msg) => {
                    if pending.events == 0 {
                        flush_at = tokio::time::Instant::now() + batch_wait;
                    }
                    let incoming = Incoming { key: msg.key(), value: msg.payload() };
                    stats.consumed += 1;
                    since_log += 1;
                    match classify(registry, &operations, &mut engine, incoming) {
                        Verdict::Counted { changed: Some(id), .. } => {
                            pending.operations.insert(engine.report(&id.0, &id.1).map(|e| e.operation.clone()).unwrap_or_default());
                            pending.changed.insert(id);
                            stats.changed += 1;
                        }
                        Verdict::Counted { changed: None, .. } => stats.unchanged += 1,
                        Verdict::Dead { reason, detail, force, event_id } => {
                            debug!(partition = msg.partition(), offset = msg.offset(), %reason, %detail, "Dead-lettering.");
                            let record = DeadLetter {
                                topic: msg.topic().to_string(),
                                partition: msg.partition(),
                                offset: msg.offset(),
                                reason: reason.code().to_string(),
                                detail,
                                force,
                                event_id,
                            };
                            pending.dead.push((record, dlq::Original::of(&msg)));
                            stats.dead_lettered += 1;
                        }
                    }
                    pending.offsets.insert(msg.partition(), msg.offset() + 1);
                    pending.events += 1;
                    if pending.events >= settings.rollup.batch_size {
                        flush(settings, &mut engine, store.as_mut(), &producer, &consumer, &mut pending, &mut stats).await?;
                    }
                }
                // librdkafka retries broker errors itself; the assignment and
                // its offsets stay, so nothing is skipped while we wait.
                Err(e) => {
                    warn!(error = %e, "Kafka consumer error; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
        }
        if last_log.elapsed() >= Duration::from_secs(10) && since_log > 0 {
            let rate = since_log as f64 / last_log.elapsed().as_secs_f64();
            info!(
                consumed = stats.consumed,
                rate_per_s = rate as u64,
                reports = engine.report_count(),
                "Rollup progress."
            );
            last_log = Instant::now();
            since_log = 0;
        }
    }
    flush(settings, &mut engine, store.as_mut(), &producer, &consumer, &mut pending, &mut stats).await?;
    let secs = started.elapsed().as_secs_f64();
    info!(
        consumed = stats.consumed,
        changed = stats.changed,
        unchanged = stats.unchanged,
        dead_lettered = stats.dead_lettered,
        batches = stats.batches,
        elapsed_s = format!("{secs:.1}"),
        "Rollup stopped."
    );
    Ok(stats)
}

/// Dead letters first (acknowledged by Kafka), then state + offsets in one
/// store transaction. A failure returns an error: the process stops, and the
/// next start resumes from the last committed batch.
async fn flush(
    settings: &HubSettings,
    engine: &mut Engine,
    store: &mut (dyn Store + Send),
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    pending: &mut Pending,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    if pending.events == 0 {
        return Ok(());
    }
    let p = std::mem::take(pending);
    let k = &settings.kafka;
    dlq::send_all(producer, &k.dlq_topic, &p.dead).await?;
    let registry = Registry::builtin();
    let mut batch = Batch::default();
    for (force, event_id) in &p.changed {
        let e = engine.report(force, event_id).expect("a changed report is in the engine");
        batch.reports.push((e.clone(), registry.encode(e)));
    }
    for op in &p.operations {
        let totals = engine.totals(op).cloned().unwrap_or_default();
        batch.totals.push((op.clone(), totals));
    }
    batch.dead_letters = p.dead.into_iter().map(|(d, _)| d).collect();
    batch.offsets = p.offsets.iter().map(|(&part, &next)| (k.topic.clone(), part, next)).collect();
    store.commit(&batch)?;
    stats.batches += 1;
    // The group's offsets only show lag to operators; the store's are the truth.
    let mut tpl = TopicPartitionList::new();
    for (&part, &next) in &p.offsets {
        tpl.add_partition_offset(&k.topic, part, Offset::Offset(next))?;
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        debug!(error = %e, "Group offset commit failed (informational only).");
    }
    Ok(())
}

/// One partition's position: the topic's end against the store's next offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    pub end: i64,
    pub stored: i64,
}

impl PartitionLag {
    pub fn lag(&self) -> i64 {
        (self.end - self.stored).max(0)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    pub partitions: Vec<PartitionLag>,
}

impl Lag {
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }
}

/// How far the store is behind the input topic (zero: everything written to
/// the topic so far is counted or dead-lettered).
pub fn lag(settings: &HubSettings) -> anyhow::Result<Lag> {
    let k = &settings.kafka;
    let consumer: BaseConsumer = kafka::client_config(&k.bootstrap, &[], &k.librdkafka).create()?;
    let high = kafka::high_watermarks(&consumer, &k.topic)?;
    let stored = if settings.store.path.exists() {
        crate::store::SqliteStore::open_read(&settings.store.path)?.offsets(&k.topic)?
    } else {
        BTreeMap::new()
    };
    let partitions = high
        .into_iter()
        .map(|(partition, end)| PartitionLag { partition, end, stored: stored.get(&partition).copied().unwrap_or(0) })
        .collect();
    Ok(Lag { partitions })
}
