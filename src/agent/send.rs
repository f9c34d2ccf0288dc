//! How `agent publish` and `agent resend` send the outbox: a few batches in
//! flight at once, each message tagged with its outbox seq, so that
//! librdkafka's delivery callback names the message Kafka acknowledged (no
//! future and channel per message, which cost more than producing it). A
//! message leaves the outbox only once acknowledged, and batch by batch, so
//! the outbox is fsync'd per batch, never per message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use tokio::sync::mpsc;
use tokio::time::Interval;
use tracing::warn;

use super::deliver::{progress_bar, DeliveryError, QuietContext, BATCH};
use super::ledger::Ledger;
use super::sign;
use crate::config::AgentSettings;
use crate::kafka;
use crate::trust::LoadedKey;

/// Batches in flight at once: the next ones are produced while the first
/// waits for its acknowledgements and their removal from the outbox, so the
/// producer never idles on a round trip. A crash resends at most these.
const IN_FLIGHT: usize = 4;
/// How long one metadata request may take, and how often the agent says
/// what it is waiting for.
const ASK_EVERY: Duration = Duration::from_secs(2);
const NOTE_EVERY: Duration = Duration::from_secs(5);
/// Messages offered straight after recording that may be in flight at
/// once: memory stays bounded however large the file.
const OFFERED: u64 = 50_000;

/// What the delivery callback reports: the message's outbox seq, and the
/// error when Kafka refused it or it timed out.
type Ack = (i64, Option<String>);

pub(crate) struct AckContext {
    quiet: QuietContext,
    acks: mpsc::UnboundedSender<Ack>,
}

impl ClientContext for AckContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.quiet.log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.quiet.error(error, reason);
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let error = result.as_ref().err().map(|(e, _)| e.to_string());
        // Nobody listens only once the run is over.
        let _ = self.acks.send((seq as i64, error));
    }
}

/// Serves librdkafka's delivery callbacks from a thread of its own, asking
/// every 10 ms whether to stop: rdkafka's `ThreadedProducer` asks every
/// 100 ms, which every one-shot run waited out at its end.
struct Poller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(producer: Arc<BaseProducer<AckContext>>) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("producer poll".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    producer.poll(Duration::from_millis(10));
                }
            })
            .expect("a thread for the producer's callbacks");
        Poller { stop, thread: Some(thread) }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The one-shot commands' producer and the acknowledgements it reports.
pub(crate) struct Sender {
    /// First, so that it stops before the producer is dropped.
    _poller: Poller,
    producer: Arc<BaseProducer<AckContext>>,
    acks: mpsc::UnboundedReceiver<Ack>,
    flight: Flight,
    signer: Option<Arc<LoadedKey>>,
}

/// A message Kafka has not acknowledged within `give_up_after_s` fails, so
/// that a run ends with the outbox kept instead of waiting out librdkafka's
/// five minutes. A raw `message.timeout.ms` in `kafka.librdkafka` still wins.
pub(crate) fn sender(settings: &AgentSettings) -> Result<Sender, DeliveryError> {
    let timeout = settings.kafka.give_up_after_s.saturating_mul(1000).min(i32::MAX as u64).to_string();
    let mut defaults: Vec<(&str, &str)> =
        kafka::PRODUCER_DEFAULTS.iter().filter(|(k, _)| *k != "message.timeout.ms").copied().collect();
    defaults.push(("message.timeout.ms", &timeout));
    let signer = sign::load(settings)?;
    let (tx, acks) = mpsc::unbounded_channel();
    let producer: BaseProducer<AckContext> =
        kafka::client_config(&settings.kafka.bootstrap, &defaults, &settings.kafka.librdkafka)
            .create_with_context(AckContext { quiet: QuietContext::default(), acks: tx })
            .map_err(|source| DeliveryError::Producer { bootstrap: settings.kafka.bootstrap.clone(), source })?;
    let producer = Arc::new(producer);
    Ok(Sender { _poller: Poller::start(producer.clone()), producer, acks, flight: Flight::default(), signer })
}

/// One batch in flight: its seqs are all above the batch before's.
#[derive(Default)]
struct InFlight {
    first_seq: i64,
    last_seq: i64,
    size: u64,
    left: u64,
    acked: Vec<i64>,
    failed: u64,
    first_error: Option<String>,
}

impl InFlight {
    fn settle(&mut self, seq: i64, error: Option<String>) {
        self.left -= 1;
        match error {
            None => self.acked.push(seq),
            Some(e) => {
                self.failed += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// The batches handed to librdkafka and not yet settled, oldest first, and
/// what became of those that were: kept across files, so that a file's
/// batches can go out while the next part of it is being recorded.
#[derive(Default)]
struct Flight {
    flying: VecDeque<InFlight>,
    /// The last seq handed over: the outbox is read on from there.
    after: i64,
    acked: u64,
    /// The first batch with a failure: no new batch goes out after it.
    failed: Option<InFlight>,
}

impl Flight {
    fn messages(&self) -> u64 {
        self.flying.iter().map(|b| b.left).sum()
    }
}

impl Sender {
    /// Hands every message of `batch` to librdkafka; one it refuses at once
    /// counts as failed.
    async fn produce<'a>(&self, topic: &str, batch: &[(i64, &'a str, &'a [u8])]) -> InFlight {
        let size = batch.len() as u64;
        let (first_seq, last_seq) = (batch.first().map_or(0, |m| m.0), batch.last().map_or(0, |m| m.0));
        let mut f = InFlight { first_seq, last_seq, size, left: size, ..InFlight::default() };
        let mut signed = self.signer.as_deref().map(|k| sign::headers_of_batch(k, batch)).map(Vec::into_iter);
        for &(seq, key, value) in batch {
            let headers = signed.as_mut().and_then(Iterator::next);
            let Ok(opaque) = usize::try_from(seq) else {
                f.settle(seq, Some(format!("outbox seq {seq} out of range")));
                continue;
            };
            let mut record = BaseRecord::with_opaque_to(topic, opaque).key(key).payload(value);
            if let Some(h) = headers {
                record = record.headers(h);
            }
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    // librdkafka's queue is full: it empties as acknowledgements come in.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        f.settle(seq, Some(e.to_string()));
                        break;
                    }
                }
            }
        }
        f
    }

    /// Whether the broker answers a metadata request within a second.
    pub(crate) async fn answers(&self, topic: &str) -> bool {
        self.ask_metadata(topic, Duration::from_secs(1)).await.is_ok()
    }

    /// One metadata request for `topic`, off the async threads (it blocks).
    async fn ask_metadata(&self, topic: &str, timeout: Duration) -> Result<(), KafkaError> {
        let (p, topic) = (self.producer.clone(), topic.to_string());
        let asked = tokio::task::spawn_blocking(move || p.client().fetch_metadata(Some(&topic), timeout).map(|_| ()));
        asked.await.expect("the metadata request does not panic")
    }

    /// Removes the front batch from the outbox once all its messages are
    /// settled, or waits for the next acknowledgement (saying every
    /// `NOTE_EVERY` what it waits for). `false` when nothing is in flight.
    async fn step(
        &mut self,
        ledger: &mut Ledger,
        bar: &ProgressBar,
        note: &mut Interval,
        bootstrap: &str,
    ) -> Result<bool, DeliveryError> {
        match self.flight.flying.front() {
            None => return Ok(false),
            Some(front) if front.left == 0 => {
                let done = self.flight.flying.pop_front().expect("a front batch");
                ledger.acknowledge(&done.acked)?;
                self.flight.acked += done.acked.len() as u64;
                if done.failed > 0 && self.flight.failed.is_none() {
                    self.flight.failed = Some(done);
                }
                return Ok(true);
            }
            Some(_) => {}
        }
        tokio::select! {
            ack = self.acks.recv() => {
                let (seq, error) = ack.expect("the producer, which holds the sending half, outlives the run");
                // An acknowledgement left over from an earlier drain that stopped early belongs to no batch here.
                if let Some(batch) = self.flight.flying.iter_mut().find(|b| (b.first_seq..=b.last_seq).contains(&seq)) {
                    batch.settle(seq, error);
                    bar.inc(1);
                }
            }
            _ = note.tick() => {
                let left = ledger.outbox_len()?;
                warn!(%bootstrap, outbox = left, "Waiting for the broker at {bootstrap}: {left} messages in the outbox.");
            }
        }
        Ok(true)
    }

    /// Sends a batch just recorded in the outbox at once, from memory, once
    /// fewer than `OFFERED` messages are in flight; none after a failure
    /// (it stays in the outbox for the final drain to report).
    pub(crate) async fn offer(
        &mut self,
        settings: &AgentSettings,
        ledger: &mut Ledger,
        seqs: &[i64],
        messages: &[&(String, Vec<u8>)],
    ) -> Result<(), DeliveryError> {
        let (bar, mut note) = (ProgressBar::hidden(), note_interval());
        while self.flight.failed.is_none() && self.flight.messages() >= OFFERED {
            self.step(ledger, &bar, &mut note, &settings.kafka.bootstrap).await?;
        }
        if self.flight.failed.is_some() {
            return Ok(());
        }
        let Some(&last) = seqs.last() else { return Ok(()) };
        self.flight.after = last;
        let batch: Vec<(i64, &str, &[u8])> =
            seqs.iter().zip(messages).map(|(&seq, (k, v))| (seq, k.as_str(), v.as_slice())).collect();
        let f = self.produce(&settings.kafka.topic, &batch).await;
        self.flight.flying.push_back(f);
        Ok(())
    }
    /// Asks the broker for the topic's metadata until it answers, saying each
    /// time what it waits for, and gives up after `give_up_after_s`.
    /// librdkafka alone would queue the messages and retry in silence for as
    /// long as a delivery may take.
    async fn wait_for_broker(&self, settings: &AgentSettings, ledger: &Ledger) -> Result<(), DeliveryError> {
        let (started, give_up) = (Instant::now(), Duration::from_secs(settings.kafka.give_up_after_s));
        let bootstrap = &settings.kafka.bootstrap;
        loop {
            let ask = ASK_EVERY.min(give_up.saturating_sub(started.elapsed())).max(Duration::from_millis(100));
            let reason = match self.ask_metadata(&settings.kafka.topic, ask).await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            let (waited, left) = (started.elapsed(), ledger.outbox_len()?);
            if waited >= give_up {
                return Err(DeliveryError::Unreachable {
                    bootstrap: bootstrap.clone(),
                    waited_s: waited.as_secs(),
                    reason,
                    left,
                    state_dir: ledger.state_dir().display().to_string(),
                });
            }
            let in_s = (give_up - waited).as_secs_f64().ceil();
            warn!(%bootstrap, outbox = left, %reason, "Waiting for the broker at {bootstrap}: {left} messages in the outbox (giving up in {in_s} s).");
            // A pause between requests, not a stand-in for the broker's answer.
            tokio::time::sleep(ASK_EVERY.min(give_up - waited)).await;
        }
    }
}

fn note_interval() -> Interval {
    tokio::time::interval_at(tokio::time::Instant::now() + NOTE_EVERY, NOTE_EVERY)
}

/// Sends the whole outbox once (after what [`Sender::offer`] sent, which it
/// awaits) and returns how many messages were acknowledged in this run.
/// Issues no new batch after one with a failure: the broker is then down or
/// refusing, and every further batch would only wait out
/// `message.timeout.ms` too (those already in flight are awaited, and what
/// they got acknowledged leaves the outbox).
pub(crate) async fn drain(
    settings: &AgentSettings,
    sender: &mut Sender,
    ledger: &mut Ledger,
    progress: bool,
) -> Result<u64, DeliveryError> {
    let outbox = ledger.outbox_len()?;
    if outbox == 0 {
        return Ok(std::mem::take(&mut sender.flight.acked));
    }
    if sender.flight.flying.is_empty() {
        sender.wait_for_broker(settings, ledger).await?;
    }
    let (bar, topic, bootstrap) = (progress_bar(outbox, progress), &settings.kafka.topic, &settings.kafka.bootstrap);
    let mut note = note_interval();
    loop {
        while sender.flight.failed.is_none() && sender.flight.flying.len() < IN_FLIGHT {
            let batch = ledger.pending_after(sender.flight.after, BATCH)?;
            let Some(last) = batch.last() else { break };
            sender.flight.after = last.seq;
            let batch: Vec<(i64, &str, &[u8])> =
                batch.iter().map(|m| (m.seq, m.key.as_str(), m.value.as_slice())).collect();
            let f = sender.produce(topic, &batch).await;
            sender.flight.flying.push_back(f);
        }
        if !sender.step(ledger, &bar, &mut note, bootstrap).await? {
            break;
        }
    }
    bar.finish_and_clear();
    let acked = std::mem::take(&mut sender.flight.acked);
    match sender.flight.failed.take() {
        None => Ok(acked),
        Some(f) => Err(DeliveryError::Undelivered {
            failed: f.failed,
            attempted: f.size,
            bootstrap: bootstrap.clone(),
            reason: f.first_error.unwrap_or_default(),
            left: ledger.outbox_len()?,
            state_dir: ledger.state_dir().display().to_string(),
        }),
    }
}
