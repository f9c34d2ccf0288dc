//! Sending the outbox to Kafka in batches. A message leaves the outbox only
//! once Kafka has acknowledged it (`acks=all`, idempotent producer); anything
//! else leaves it where it is, to be sent again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tracing::{debug, warn};

use super::ledger::{Ledger, LedgerError, Outgoing};
use crate::config::AgentSettings;
use crate::kafka;

/// Messages read from the outbox and sent at a time: acknowledgements are
/// written per batch, so a crash resends at most one batch (as duplicates).
pub(crate) const BATCH: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(
        "{failed} of {attempted} messages were not acknowledged by Kafka at {bootstrap} ({reason}); \
         {left} messages stay in the outbox in {state_dir} and go out on the next run (`agent publish` or \
         `agent resend`)"
    )]
    Undelivered { failed: u64, attempted: u64, bootstrap: String, reason: String, left: u64, state_dir: String },
    #[error(
        "no Kafka broker answered at {bootstrap} within {waited_s} s ({reason}); the outbox in {state_dir} keeps \
         its {left} messages: `jointops agent resend` (or the next `agent publish`) delivers them once the broker \
         is reachable"
    )]
    Unreachable { bootstrap: String, waited_s: u64, reason: String, left: u64, state_dir: String },
    #[error("cannot create the Kafka producer for {bootstrap}: {source}")]
    Producer { bootstrap: String, source: KafkaError },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

pub(crate) type Producer = FutureProducer<QuietContext>;

pub(crate) fn producer(settings: &AgentSettings) -> Result<Producer, DeliveryError> {
    kafka::client_config(&settings.kafka.bootstrap, kafka::PRODUCER_DEFAULTS, &settings.kafka.librdkafka)
        .create_with_context(QuietContext::default())
        .map_err(|source| DeliveryError::Producer { bootstrap: settings.kafka.bootstrap.clone(), source })
}

/// The producer of the one-shot commands (`publish`, `resend`): a message
/// Kafka has not acknowledged within `give_up_after_s` fails, so that a run
/// ends with the outbox kept instead of waiting out librdkafka's five
/// minutes. A raw `message.timeout.ms` in `kafka.librdkafka` still wins.
pub(crate) fn publish_producer(settings: &AgentSettings) -> Result<Producer, DeliveryError> {
    let timeout = settings.kafka.give_up_after_s.saturating_mul(1000).min(i32::MAX as u64).to_string();
    let mut defaults: Vec<(&str, &str)> =
        kafka::PRODUCER_DEFAULTS.iter().filter(|(k, _)| *k != "message.timeout.ms").copied().collect();
    defaults.push(("message.timeout.ms", &timeout));
    kafka::client_config(&settings.kafka.bootstrap, &defaults, &settings.kafka.librdkafka)
        .create_with_context(QuietContext::default())
        .map_err(|source| DeliveryError::Producer { bootstrap: settings.kafka.bootstrap.clone(), source })
}

/// How long one metadata request may take, and how often the agent says
/// what it is waiting for.
const ASK_EVERY: Duration = Duration::from_secs(2);
const NOTE_EVERY: Duration = Duration::from_secs(5);

/// Asks the broker for the topic's metadata until it answers, saying each
/// time what it waits for, and gives up after `give_up_after_s`. librdkafka
/// alone would queue the messages and retry in silence for as long as a
/// delivery may take.
async fn wait_for_broker(settings: &AgentSettings, producer: &Producer, ledger: &Ledger) -> Result<(), DeliveryError> {
    let (started, give_up) = (Instant::now(), Duration::from_secs(settings.kafka.give_up_after_s));
    let bootstrap = &settings.kafka.bootstrap;
    loop {
        let (p, topic) = (producer.clone(), settings.kafka.topic.clone());
        let ask = ASK_EVERY.min(give_up.saturating_sub(started.elapsed())).max(Duration::from_millis(100));
        let asked = tokio::task::spawn_blocking(move || p.client().fetch_metadata(Some(&topic), ask).map(|_| ()));
        let reason = match asked.await.expect("the metadata request does not panic") {
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

/// librdkafka reports every failed reconnect, twice: while `watch` waits out
/// an outage of hours that would be an error line or two a second. Its
/// errors and warnings go out as warnings at most once a minute (the first
/// one always), the rest at debug; the agent's own warning on each failed
/// delivery attempt says what matters.
#[derive(Default)]
pub(crate) struct QuietContext {
    last_loud: Mutex<Option<Instant>>,
}

impl QuietContext {
    const EVERY: Duration = Duration::from_secs(60);

    fn loud(&self) -> bool {
        let mut last = self.last_loud.lock().unwrap_or_else(|e| e.into_inner());
        let loud = last.is_none_or(|t| t.elapsed() >= Self::EVERY);
        if loud {
            *last = Some(Instant::now());
        }
        loud
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) && self.loud() {
            warn!(facility = fac, message = log_message, "Kafka client (similar messages muted for a minute).");
        } else {
            debug!(facility = fac, message = log_message, "Kafka client.");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.loud() {
            warn!(%error, reason, "Kafka client error (similar messages muted for a minute).");
        } else {
            debug!(%error, reason, "Kafka client error.");
        }
    }
}

/// What became of one batch.
#[derive(Debug, Default)]
pub(crate) struct BatchResult {
    pub acked: Vec<i64>,
    pub failed: u64,
    pub first_error: Option<String>,
    /// The highest seq in the batch.
    pub last_seq: i64,
}

/// Sends one batch and waits for every acknowledgement or failure. Owns its
/// inputs so that `watch` can keep it in flight while it plans other files.
pub(crate) async fn send_batch(
    producer: Producer,
    topic: String,
    batch: Vec<Outgoing>,
    bar: ProgressBar,
) -> BatchResult {
    let mut result = BatchResult { last_seq: batch.last().map_or(0, |m| m.seq), ..BatchResult::default() };
    let mut sends: FuturesUnordered<_> = batch
        .iter()
        .map(|m| {
            let record = FutureRecord::to(&topic).key(m.key.as_str()).payload(m.value.as_slice());
            // Queue wait only: delivery itself is bounded by message.timeout.ms.
            let sent = producer.send(record, Duration::from_secs(300));
            async move { (m.seq, sent.await.map(|_| ()).map_err(|(e, _)| e)) }
        })
        .collect();
    while let Some((seq, r)) = sends.next().await {
        bar.inc(1);
        match r {
            Ok(()) => result.acked.push(seq),
            Err(e) => {
                result.failed += 1;
                result.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    result
}

pub(crate) fn progress_bar(len: u64, progress: bool) -> ProgressBar {
    if !progress || len < 1000 {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({per_sec}, {eta})").expect("template"));
    b.set_message("publishing");
    b
}

/// Sends the whole outbox once, batch after batch, and returns how many
/// messages were acknowledged. Stops at the first batch with a failure: the
/// broker is then down or refusing, and every further batch would only wait
/// out `message.timeout.ms` too.
pub(crate) async fn drain(
    settings: &AgentSettings,
    producer: &Producer,
    ledger: &mut Ledger,
    progress: bool,
) -> Result<u64, DeliveryError> {
    let outbox = ledger.outbox_len()?;
    if outbox > 0 {
        wait_for_broker(settings, producer, ledger).await?;
    }
    let bar = progress_bar(outbox, progress);
    let (mut after, mut acked) = (0, 0u64);
    loop {
        let batch = ledger.pending_after(after, BATCH)?;
        if batch.is_empty() {
            break;
        }
        let attempted = batch.len() as u64;
        let send = send_batch(producer.clone(), settings.kafka.topic.clone(), batch, bar.clone());
        tokio::pin!(send);
        let mut note = tokio::time::interval_at(tokio::time::Instant::now() + NOTE_EVERY, NOTE_EVERY);
        let r = loop {
            tokio::select! {
                r = &mut send => break r,
                _ = note.tick() => {
                    let (bootstrap, left) = (&settings.kafka.bootstrap, outbox - acked);
                    warn!(%bootstrap, outbox = left, "Waiting for the broker at {bootstrap}: {left} messages in the outbox.");
                }
            }
        };
        ledger.acknowledge(&r.acked)?;
        acked += r.acked.len() as u64;
        if r.failed > 0 {
            bar.finish_and_clear();
            return Err(DeliveryError::Undelivered {
                failed: r.failed,
                attempted,
                bootstrap: settings.kafka.bootstrap.clone(),
                reason: r.first_error.unwrap_or_default(),
                left: ledger.outbox_len()?,
                state_dir: ledger.state_dir().display().to_string(),
            });
        }
        after = r.last_seq;
    }
    bar.finish_and_clear();
    Ok(acked)
}

/// Capped exponential backoff between delivery attempts.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next attempt; each call doubles the one after.
    pub fn step(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        now
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..8).map(|_| b.step().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.reset();
        assert_eq!(b.step(), Duration::from_secs(1));
    }
}
