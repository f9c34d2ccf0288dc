//! Publishing: plan each file into the ledger's outbox, then send the outbox
//! with an idempotent producer and forget each message only once Kafka has
//! acknowledged it.

use std::path::PathBuf;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tracing::{info, warn};

use super::export::{read_export, RowError};
use super::ledger::{Ledger, Outgoing};
use super::plan::plan;
use crate::config::AgentSettings;
use crate::kafka;

/// The outcome of one file, as printed and (later) written as a receipt.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct FileSummary {
    pub file: String,
    pub published: u64,
    pub unchanged: u64,
    pub withdrawn: u64,
    pub rejected: u64,
    pub rejections: Vec<Rejection>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub reason: String,
}

impl From<&RowError> for Rejection {
    fn from(e: &RowError) -> Self {
        Rejection { line: e.line, reason: e.reason.clone() }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub files: Vec<FileSummary>,
    /// Messages left over from an earlier run and delivered now.
    pub redelivered: u64,
}

impl Summary {
    pub fn total(&self) -> FileSummary {
        let mut t = FileSummary { file: "total".into(), ..FileSummary::default() };
        for f in &self.files {
            t.published += f.published;
            t.unchanged += f.unchanged;
            t.withdrawn += f.withdrawn;
            t.rejected += f.rejected;
        }
        t
    }
}

fn producer(settings: &AgentSettings) -> anyhow::Result<FutureProducer> {
    Ok(kafka::client_config(&settings.kafka.bootstrap, kafka::PRODUCER_DEFAULTS, &settings.kafka.librdkafka)
        .create()?)
}

/// Publishes each export in turn. Rejected rows are reported, never dropped
/// silently; a file that cannot be read at all is an error.
pub async fn publish_files(settings: &AgentSettings, files: &[PathBuf], progress: bool) -> anyhow::Result<Summary> {
    let mut ledger = Ledger::open(&settings.state_dir)?;
    let producer = producer(settings)?;
    let mut summary = Summary {
        redelivered: deliver(&producer, &settings.kafka.topic, &mut ledger, progress).await?,
        ..Summary::default()
    };
    for path in files {
        let file = path.display().to_string();
        let (rows, errors) = read_export(path)?;
        let now = chrono::Utc::now().timestamp_millis();
        let p = plan(settings, &ledger, &file, rows, errors, now)?;
        ledger.record(&p.entries, &p.messages)?;
        deliver(&producer, &settings.kafka.topic, &mut ledger, progress).await?;
        for r in &p.rejected {
            warn!(file = %r.file, line = r.line, reason = %r.reason, "Row rejected.");
        }
        let s = FileSummary {
            file,
            published: p.published,
            unchanged: p.unchanged,
            withdrawn: p.withdrawn,
            rejected: p.rejected.len() as u64,
            rejections: p.rejected.iter().map(Rejection::from).collect(),
        };
        info!(file = %s.file, published = s.published, unchanged = s.unchanged, withdrawn = s.withdrawn, rejected = s.rejected, "Export published.");
        summary.files.push(s);
    }
    Ok(summary)
}

/// Sends the last published revision of every record again: the hub counts
/// nothing twice (R1), so this is safe whenever the hub asks for it.
pub async fn resend(settings: &AgentSettings, progress: bool) -> anyhow::Result<u64> {
    let mut ledger = Ledger::open(&settings.state_dir)?;
    let producer = producer(settings)?;
    ledger.requeue_all()?;
    deliver(&producer, &settings.kafka.topic, &mut ledger, progress).await
}

async fn send_one(producer: &FutureProducer, topic: &str, m: &Outgoing, bar: &ProgressBar) -> Result<i64, String> {
    let record = FutureRecord::to(topic).key(m.key.as_str()).payload(m.value.as_slice());
    let r = producer.send(record, Duration::from_secs(300)).await;
    bar.inc(1);
    r.map(|_| m.seq).map_err(|(e, _)| e.to_string())
}

/// Sends the whole outbox; acknowledged messages leave it. Fails if any
/// message was not acknowledged (it stays for the next run).
async fn deliver(producer: &FutureProducer, topic: &str, ledger: &mut Ledger, progress: bool) -> anyhow::Result<u64> {
    let pending = ledger.pending()?;
    if pending.is_empty() {
        return Ok(0);
    }
    let bar = if progress && pending.len() >= 1000 {
        let b = ProgressBar::new(pending.len() as u64);
        b.set_style(ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({per_sec}, {eta})").expect("template"));
        b.set_message("publishing");
        b
    } else {
        ProgressBar::hidden()
    };
    let mut results: Vec<Result<i64, String>> = Vec::with_capacity(pending.len());
    // In chunks, so that a huge outbox never holds a future per message.
    for chunk in pending.chunks(10_000) {
        let sends: FuturesUnordered<_> = chunk.iter().map(|m| send_one(producer, topic, m, &bar)).collect();
        results.extend(sends.collect::<Vec<_>>().await);
    }
    bar.finish_and_clear();
    let acked: Vec<i64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    ledger.acknowledge(&acked)?;
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if let Some(first) = failed.first() {
        anyhow::bail!(
            "{} of {} messages were not acknowledged by Kafka ({first}); they stay in the outbox and are sent on the next run",
            failed.len(),
            pending.len()
        );
    }
    Ok(acked.len() as u64)
}
