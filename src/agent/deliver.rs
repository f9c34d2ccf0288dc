//! Sending the outbox to Kafka in batches, as `agent watch` does (the
//! one-shot commands use `send.rs`). A message leaves the outbox only once
//! Kafka has acknowledged it (`acks=all`, idempotent producer); anything
//! else leaves it where it is, to be sent again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::{debug, warn};

use super::ledger::{LedgerError, Outgoing};
use super::sign::{self, SigningError};
use crate::config::AgentSettings;
use crate::kafka;
use crate::trust::LoadedKey;

/// Messages read from the outbox and sent at a time (an outbox batch):
/// acknowledgements are written per batch, so a crash resends at most the
/// batches in flight, as duplicates.
pub(crate) use super::ledger::BATCH;

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
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// `watch`'s producer, with the key it signs every record with.
#[derive(Clone)]
pub(crate) struct Producer {
    inner: FutureProducer<QuietContext>,
    signer: Option<Arc<LoadedKey>>,
}

pub(crate) fn producer(settings: &AgentSettings) -> Result<Producer, DeliveryError> {
    Ok(Producer { inner: future_producer(settings)?, signer: sign::load(settings)? })
}

impl Producer {
    /// A fresh Kafka producer with the same key: the key is read (and its
    /// absence warned of) once per `watch`, not on every retry.
    pub(crate) fn renewed(&self, settings: &AgentSettings) -> Result<Producer, DeliveryError> {
        Ok(Producer { inner: future_producer(settings)?, signer: self.signer.clone() })
    }
}

fn future_producer(settings: &AgentSettings) -> Result<FutureProducer<QuietContext>, DeliveryError> {
    kafka::client_config(&settings.kafka.bootstrap, kafka::PRODUCER_DEFAULTS, &settings.kafka.librdkafka)
        .create_with_context(QuietContext::default())
        .map_err(|source| DeliveryError::Producer { bootstrap: settings.kafka.bootstrap.clone(), source })
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
}

/// Sends one batch and waits for every acknowledgement or failure. Owns its
/// inputs so that `watch` can keep it in flight while it plans other files.
pub(crate) async fn send_batch(
    producer: Producer,
    topic: String,
    batch: Vec<Outgoing>,
    bar: ProgressBar,
) -> BatchResult {
    let mut result = BatchResult::default();
    let tuples: Vec<(i64, &str, &[u8])> = batch.iter().map(|m| (m.seq, m.key.as_str(), m.value.as_slice())).collect();
    let mut signed = producer.signer.as_deref().map(|k| sign::headers_of_batch(k, &tuples).into_iter());
    let mut sends: FuturesUnordered<_> = batch
        .iter()
        .map(|m| {
            let mut record = FutureRecord::to(&topic).key(m.key.as_str()).payload(m.value.as_slice());
            if let Some(h) = signed.as_mut().and_then(Iterator::next) {
                record = record.headers(h);
            }
            // Queue wait only: delivery itself is bounded by message.timeout.ms.
            let sent = producer.inner.send(record, Duration::from_secs(300));
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
