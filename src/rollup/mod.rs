//! The hub's rollup: consumes the input topic, classifies each record, sends
//! bad ones to the dead-letter topic, and persists state changes together
//! with the consumed offsets in one store transaction per batch.

pub mod classify;
mod dlq;
mod heartbeat;
mod observe;
mod rebuild;
pub mod replay;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::codec::Registry;
use crate::config::HubSettings;
use crate::domain::{Applied, Engine, Operations};
use crate::kafka;
use crate::store::{Activity, Batch, DeadLetter, Heartbeat, HistoryRow, SqliteStore, Store};
use crate::trust::{Keyring, SignatureHeaders};
use classify::{classify, Checks, Incoming, Verdict};

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
    /// Every revision applied, in order; the last one of a report is its state.
    history: Vec<HistoryRow>,
    operations: BTreeSet<String>,
    dead: Vec<DeadLetter>,
    offsets: BTreeMap<i32, i64>,
    /// Per (operation, force): new reports, newest Kafka time counted.
    activity: BTreeMap<(String, String), (i64, i64)>,
}

/// Rebuilds the engine from the store's reports (the state is a set, so the
/// order does not matter).
pub fn load_engine(store: &dyn Store, registry: &Registry, operations: &Operations) -> anyhow::Result<Engine> {
    let mut engine = operations.engine();
    for (force, event_id, value) in store.reports()? {
        let event = registry.decode(&value).map_err(|e| {
            anyhow::anyhow!("stored report {force}/{event_id} cannot be decoded: {e}; rebuild the store from the topic")
        })?;
        engine.apply(event).map_err(|e| anyhow::anyhow!("stored report {force}/{event_id}: {e}"))?;
    }
    Ok(engine)
}

/// The exclusive lock beside a store: one rollup writes a store at a time.
pub(crate) fn lock_path(store: &std::path::Path) -> PathBuf {
    crate::private::with_suffix(store, ".lock")
}

pub(crate) fn try_lock(store: &std::path::Path) -> anyhow::Result<Option<std::fs::File>> {
    let path = lock_path(store);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!("cannot lock {}: {e}", path.display())),
    }
}

/// Everything the consume loop works on, but the consumer itself (messages
/// borrow it while the rollup changes).
struct Rollup<'a> {
    settings: &'a HubSettings,
    registry: &'static Registry,
    operations: Operations,
    keyring: Keyring,
    /// The input topic's partitions, fixed once events flow (§3).
    partitions: i32,
    engine: Engine,
    store: Box<dyn Store + Send>,
    producer: FutureProducer,
    pending: Pending,
    stats: Stats,
    /// False while rebuilding: the live rollup already sent those.
    send_dead_letters: bool,
    /// Held while this process is the store's writer.
    lock: Option<std::fs::File>,
    /// Each partition's next offset as committed to the store.
    committed: BTreeMap<i32, i64>,
    ends: heartbeat::Ends,
}

impl Rollup<'_> {
    fn handle(&mut self, msg: &BorrowedMessage<'_>) {
        let headers = msg.headers();
        let signature = SignatureHeaders::from_headers(headers.iter().flat_map(|h| h.iter()).map(|h| (h.key, h.value)));
        let incoming = Incoming {
            key: msg.key(),
            value: msg.payload(),
            signature,
            partition: msg.partition(),
            partitions: self.partitions,
        };
        self.stats.consumed += 1;
        let checks = Checks { registry: self.registry, operations: &self.operations, keyring: &self.keyring };
        // When the record reached the topic: as-of figures and a force's
        // last counted event then read the same after a rebuild.
        let at = msg.timestamp().to_millis().unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let verdict = classify(checks, &mut self.engine, incoming);
        observe::verdict(&verdict);
        match verdict {
            Verdict::Counted { applied, changed: Some((force, event_id)) } => {
                let e = self.engine.report(&force, &event_id).expect("a changed report is in the engine");
                self.pending.operations.insert(e.operation.clone());
                let act = self.pending.activity.entry((e.operation.clone(), force.clone())).or_default();
                act.0 += i64::from(applied == Applied::New);
                act.1 = act.1.max(at);
                self.pending.history.push(HistoryRow {
                    revision: e.revision,
                    operation: e.operation.clone(),
                    at,
                    value: self.registry.encode(e),
                    force,
                    event_id,
                });
                self.stats.changed += 1;
            }
            Verdict::Counted { changed: None, .. } => self.stats.unchanged += 1,
            Verdict::Dead { reason, detail, force, event_id, operation } => {
                debug!(partition = msg.partition(), offset = msg.offset(), %reason, %detail, "Dead-lettering.");
                self.pending.dead.push(DeadLetter {
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                    offset: msg.offset(),
                    reason: reason.code().to_string(),
                    detail,
                    force,
                    event_id,
                    operation,
                    at: msg.timestamp().to_millis(),
                    original: dlq::original_of(msg),
                    sent: self.send_dead_letters,
                    replayed: false,
                });
                self.stats.dead_lettered += 1;
            }
        }
        self.pending.offsets.insert(msg.partition(), msg.offset() + 1);
        self.pending.events += 1;
    }

    /// A heartbeat with the lag behind the topic. Failing to write one is
    /// logged, not fatal: readers then say the rollup looks stopped.
    fn beat(&mut self) {
        let lags = self.ends.lags(&self.committed);
        let beat =
            Heartbeat { at: chrono::Utc::now().timestamp_millis(), lag: lags.as_ref().map(|l| l.values().sum()) };
        if let Err(e) = self.store.heartbeat(&beat) {
            metrics::counter!("jointops_rollup_store_errors_total").increment(1);
            warn!(error = %e, "Heartbeat not written.");
        }
        observe::beat(&beat, lags.as_ref(), &self.operations);
    }

    /// Dead letters first (acknowledged by Kafka), then state + offsets in one
    /// store transaction. A failure returns an error: the process stops, and
    /// the next start resumes from the last committed batch.
    async fn flush(&mut self, consumer: &StreamConsumer) -> anyhow::Result<()> {
        if self.pending.events == 0 {
            return Ok(());
        }
        let mut p = std::mem::take(&mut self.pending);
        let k = &self.settings.kafka;
        if self.send_dead_letters {
            // A broker outage must not stop the hub: keep trying, and commit
            // nothing (so nothing is skipped) until Kafka has the dead letters.
            // What Kafka refuses for the record's own sake stays in the store
            // as unsent, and the partition goes on.
            let mut backoff = Duration::from_secs(1);
            let max_bytes = dlq::max_bytes(&k.librdkafka);
            let refused = loop {
                match dlq::send_all(&self.producer, &k.dlq_topic, max_bytes, &p.dead).await {
                    Ok(refused) => break refused,
                    Err(e) => {
                        warn!(error = %e, retry_in_s = backoff.as_secs(), "Dead letters not acknowledged; retrying.")
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            };
            for d in p.dead.iter_mut().filter(|d| refused.contains(&(d.topic.clone(), d.partition, d.offset))) {
                d.sent = false;
            }
        }
        let mut batch = Batch::default();
        let mut last: HashMap<(&str, &str), &HistoryRow> = HashMap::new();
        for h in &p.history {
            last.insert((&h.force, &h.event_id), h);
        }
        for ((force, event_id), h) in last {
            let e = self.engine.report(force, event_id).expect("a changed report is in the engine");
            batch.reports.push((e.clone(), h.value.clone()));
        }
        for op in &p.operations {
            batch.totals.push((op.clone(), self.engine.totals(op).cloned().unwrap_or_default()));
        }
        batch.history = p.history;
        batch.dead_letters = p.dead;
        batch.offsets = p.offsets.iter().map(|(&part, &next)| (k.topic.clone(), part, next)).collect();
        batch.activity = p
            .activity
            .into_iter()
            .map(|((operation, force), (events, last_at))| Activity { operation, force, events, last_at })
            .collect();
        batch.committed_at = chrono::Utc::now().timestamp_millis();
        let started = Instant::now();
        if let Err(e) = self.store.commit(&batch) {
            metrics::counter!("jointops_rollup_store_errors_total").increment(1);
            return Err(e.into());
        }
        metrics::histogram!("jointops_rollup_batch_commit_seconds").record(started.elapsed().as_secs_f64());
        observe::activity(&batch.activity);
        self.committed.extend(&p.offsets);
        self.stats.batches += 1;
        if self.send_dead_letters {
            // The group's offsets only show lag to operators; the store's are the truth.
            let mut tpl = TopicPartitionList::new();
            for (&part, &next) in &p.offsets {
                tpl.add_partition_offset(&k.topic, part, Offset::Offset(next))?;
            }
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                debug!(error = %e, "Group offset commit failed (informational only).");
            }
        }
        Ok(())
    }
}

/// A consumer assigned every partition at the store's next offsets.
fn assigned_consumer(settings: &HubSettings, store: &dyn Store, partitions: &[i32]) -> anyhow::Result<StreamConsumer> {
    let k = &settings.kafka;
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
    // The store's offsets, never the group's: they are the ones that match
    // the store's state.
    let stored = store.offsets(&k.topic)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let offset = stored.get(p).map_or(Offset::Beginning, |&n| Offset::Offset(n));
        tpl.add_partition_offset(&k.topic, *p, offset)?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

/// Whether the topic holds records past the store's offsets (false when the
/// broker cannot say, e.g. while it is down).
fn behind(meta: &BaseConsumer, topic: &str, store: &dyn Store) -> bool {
    let (Ok(high), Ok(stored)) = (kafka::high_watermarks(meta, topic), store.offsets(topic)) else {
        return false;
    };
    high.iter().any(|(p, &h)| stored.get(p).copied().unwrap_or(0) < h)
}

/// Runs the live rollup on the configured store until `shutdown` resolves,
/// then commits what it has and returns.
pub async fn run(
    settings: &HubSettings,
    store: Box<dyn Store + Send>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Stats> {
    consume(settings, store, None, shutdown).await
}

/// Replays the input topic from the beginning into a fresh store beside the
/// configured one. Readers keep the old store until the new one has caught up
/// and the live rollup has stopped; then it is swapped in and this process
/// goes on as the live rollup.
pub async fn run_rebuild(settings: &HubSettings, shutdown: impl Future<Output = ()>) -> anyhow::Result<Stats> {
    let target = rebuild::Target::prepare(&settings.store.path)?;
    let store = SqliteStore::open(&target.new_path)?;
    consume(settings, Box::new(store), Some(target), shutdown).await
}

async fn consume(
    settings: &HubSettings,
    store: Box<dyn Store + Send>,
    mut rebuilding: Option<rebuild::Target>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<Stats> {
    let k = &settings.kafka;
    let lock = match &rebuilding {
        Some(_) => None,
        None => Some(try_lock(&settings.store.path)?.ok_or_else(|| {
            anyhow::anyhow!(
                "another rollup is writing {} (it holds {})",
                settings.store.path.display(),
                lock_path(&settings.store.path).display()
            )
        })?),
    };
    let registry = Registry::builtin();
    let started = Instant::now();
    let operations = settings.operations().map_err(anyhow::Error::msg)?;
    let keyring = settings.keyring().map_err(anyhow::Error::msg)?;
    if keyring.require_signatures() && keyring.is_empty() {
        warn!("Signatures are required but [trust] lists no keys: every record will be dead-lettered.");
    }
    let engine = load_engine(store.as_ref(), registry, &operations)?;
    info!(
        reports = engine.report_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "State loaded from the store."
    );

    let base = kafka::client_config(&k.bootstrap, &[], &k.librdkafka);
    let spec = kafka::TopicSpec::of(k);
    kafka::ensure_topics(&base, &k.topic, &k.dlq_topic, spec).await?;
    match kafka::input_topic_warnings(&base, &k.topic, spec).await {
        Ok(warnings) => warnings.iter().for_each(|w| warn!("{w}")),
        Err(e) => {
            info!(topic = %k.topic, reason = %e, "The input topic's retention and replication could not be checked.")
        }
    }
    if spec.replication < 2 && !kafka::is_local(&k.bootstrap) {
        warn!(bootstrap = %k.bootstrap, "kafka.replication_factor is 1 on a broker that is not local: one broker's loss loses records (use 3, with min_insync_replicas 2).");
    }
    let meta: BaseConsumer = base.create()?;
    let partitions = kafka::partitions(&meta, &k.topic)?;
    let mut consumer = assigned_consumer(settings, store.as_ref(), &partitions)?;
    info!(
        topic = %k.topic,
        partitions = partitions.len(),
        rebuild = rebuilding.is_some(),
        keys = keyring.len(),
        require_signatures = keyring.require_signatures(),
        "Rollup consuming."
    );

    let mut r = Rollup {
        settings,
        registry,
        operations,
        keyring,
        partitions: partitions.len() as i32,
        engine,
        store,
        producer: kafka::client_config(&k.bootstrap, kafka::PRODUCER_DEFAULTS, &k.librdkafka).create()?,
        pending: Pending::default(),
        stats: Stats::default(),
        send_dead_letters: rebuilding.is_none(),
        lock,
        committed: BTreeMap::new(),
        ends: heartbeat::Ends::watch(settings)?,
    };
    r.committed = r.store.offsets(&k.topic)?;
    observe::start(settings, partitions.len(), &r.operations);
    r.beat();
    let mut beat_at = Instant::now() + heartbeat::EVERY;
    let batch_wait = Duration::from_millis(settings.rollup.batch_ms);
    let mut flush_at = tokio::time::Instant::now() + batch_wait;
    let mut next_check = tokio::time::Instant::now() + Duration::from_secs(1);
    let stall = Duration::from_secs(settings.rollup.stall_seconds);
    let mut last_record = Instant::now();
    let mut last_log = Instant::now();
    let mut logged = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = tokio::time::sleep_until(flush_at), if r.pending.events > 0 => r.flush(&consumer).await?,
            received = consumer.recv() => match received {
                Ok(msg) => {
                    last_record = Instant::now();
                    if r.pending.events == 0 {
                        flush_at = tokio::time::Instant::now() + batch_wait;
                    }
                    r.handle(&msg);
                    if r.pending.events >= settings.rollup.batch_size {
                        r.flush(&consumer).await?;
                    }
                }
                // librdkafka retries broker errors itself; the assignment and
                // its offsets stay, so nothing is skipped while we wait.
                Err(e) => {
                    warn!(error = %e, "Kafka consumer error; retrying.");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            },
            _ = tokio::time::sleep_until(next_check) => {
                next_check = tokio::time::Instant::now() + Duration::from_secs(1);
                if Instant::now() >= beat_at {
                    r.beat();
                    beat_at = Instant::now() + heartbeat::EVERY;
                }
                // A client that receives nothing while the topic has more is
                // stuck (librdkafka can stall an assigned partition after a
                // broker restart): start a fresh one from the store's offsets.
                if last_record.elapsed() >= stall && behind(&meta, &k.topic, r.store.as_ref()) {
                    r.flush(&consumer).await?;
                    warn!(idle_s = last_record.elapsed().as_secs(), "No records although the topic has more; reconnecting the consumer.");
                    consumer = assigned_consumer(settings, r.store.as_ref(), &partitions)?;
                    last_record = Instant::now();
                }
                // While rebuilding: once caught up and the live rollup has let
                // go of the store, swap the rebuilt store in.
                if let Some(target) = rebuilding.take() {
                    r.flush(&consumer).await?;
                    rebuilding = rebuild::try_swap(&mut r, &meta, target).await?;
                }
            }
        }
        if last_log.elapsed() >= Duration::from_secs(10) && r.stats.consumed > logged {
            let rate = (r.stats.consumed - logged) as f64 / last_log.elapsed().as_secs_f64();
            info!(
                consumed = r.stats.consumed,
                rate_per_s = rate as u64,
                reports = r.engine.report_count(),
                "Rollup progress."
            );
            last_log = Instant::now();
            logged = r.stats.consumed;
        }
    }
    r.flush(&consumer).await?;
    let stats = r.stats;
    // Dropping the store is enough: SQLite keeps its WAL consistent, and
    // readers (the API) may still have it open.
    drop(r);
    info!(
        consumed = stats.consumed,
        changed = stats.changed,
        unchanged = stats.unchanged,
        dead_lettered = stats.dead_lettered,
        batches = stats.batches,
        elapsed_s = format!("{:.1}", started.elapsed().as_secs_f64()),
        "Rollup stopped."
    );
    Ok(stats)
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
    let high = kafka::high_watermarks(&consumer, &k.topic).map_err(|e| match e.rdkafka_error_code() {
        Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition) => {
            anyhow::anyhow!("no topic {:?} on {} (kafka.topic; has anything been published yet?)", k.topic, k.bootstrap)
        }
        _ => anyhow::anyhow!("cannot read the ends of {:?} on {}: {e}", k.topic, k.bootstrap),
    })?;
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
