//! `agent publish` and `agent resend`: plan each file into the ledger's
//! outbox, then send the outbox with an idempotent producer, forgetting each
//! message only once Kafka has acknowledged it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::deliver::DeliveryError;
use super::export::{read_export, ExportError, RowError};
use super::ledger::{Ledger, LedgerError, BATCH};
use super::pipeline::plan_and_send;
use super::plan::{plan, Plan, Warning};
use super::secrets::{check_secrets, SecretError};
use super::send::{drain, sender, Sender};
use crate::config::AgentSettings;

/// The outcome of one file, as printed and written as a receipt.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileSummary {
    pub file: String,
    pub published: u64,
    pub unchanged: u64,
    pub withdrawn: u64,
    pub rejected: u64,
    pub rejections: Vec<Rejection>,
    /// Said aloud, though nothing was refused (e.g. a ledger new to an
    /// operation that has started).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// What the sender should know although no row was refused (unknown columns ignored, "no rows").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why nothing of the file was accepted; absent when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
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

/// Why a publish run stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A file stopped the run, and the outbox could not be delivered either.
    #[error("{file}; and {delivery}")]
    Both { file: Box<PublishError>, delivery: DeliveryError },
}

impl FileSummary {
    pub(crate) fn of_plan(file: String, p: &Plan) -> Self {
        FileSummary {
            file,
            published: p.published,
            unchanged: p.unchanged,
            withdrawn: p.withdrawn,
            rejected: p.rejected.len() as u64,
            rejections: p.rejected.iter().map(Rejection::from).collect(),
            warnings: p.warnings.clone(),
            ..FileSummary::default()
        }
    }

    fn failed(file: String, error: String) -> Self {
        FileSummary { file, error: Some(error), ..FileSummary::default() }
    }

    /// What became of the file, in a word or two, for the printed table.
    pub fn status(&self) -> &'static str {
        match (&self.error, self.rejected) {
            (Some(e), _) if e.starts_with(NOT_READ) => "not read",
            (Some(_), _) => "failed",
            (None, 0) if self.notes.iter().any(|n| n == super::export::NO_ROWS) => "no rows",
            (None, 0) => "accepted",
            (None, _) => "accepted, rows rejected",
        }
    }
}

const NOT_READ: &str = "not read:";

/// Every file given, each with what became of it, and why the run stopped if it did.
#[derive(Debug)]
pub struct Report {
    pub summary: Summary,
    pub error: Option<PublishError>,
}

/// Publishes each export in turn: every file is planned into the outbox
/// first (so its rows are kept even while the broker is down), then the
/// outbox is sent. Rejected rows are reported, never dropped silently.
///
/// A file that cannot be read at all, or that the outbox has no room for
/// (`spool_limit`, after trying to deliver what is there), stops the run:
/// the files before it are still delivered, and the ones after it are left
/// alone, so that files are always applied in the order given.
pub async fn publish_files(
    settings: &AgentSettings,
    files: &[PathBuf],
    progress: bool,
) -> Result<Summary, PublishError> {
    let report = publish_report(settings, files, progress).await?;
    report.error.map_or(Ok(report.summary), Err)
}

/// As [`publish_files`], but the summary lists every file even when the run
/// stops: the failed file with its error, and the ones after it as not read
/// (a later file applied before an earlier one would regress revisions).
/// Err only when nothing could start (ledger, producer).
pub async fn publish_report(
    settings: &AgentSettings,
    files: &[PathBuf],
    progress: bool,
) -> Result<Report, PublishError> {
    let mut ledger = Ledger::open(&settings.state_dir)?;
    check_secrets(settings, &mut ledger, chrono::Utc::now().timestamp_millis())?;
    let mut producer = sender(settings)?;
    let leftover = ledger.outbox_len()?;
    let (mut summary, mut sent) = (Summary::default(), 0);
    let mut stopped: Option<PublishError> = None;
    for path in files {
        let file = path.display().to_string();
        if stopped.is_some() {
            let why = format!("{NOT_READ} the run stopped at an earlier file (files are applied in the order given)");
            summary.files.push(FileSummary::failed(file, why));
            continue;
        }
        match accept_file(settings, &mut producer, &mut ledger, path, progress).await {
            Ok((s, drained)) => {
                sent += drained;
                summary.files.push(s);
            }
            Err(e) => {
                summary.files.push(FileSummary::failed(file, e.to_string()));
                stopped = Some(e);
            }
        }
    }
    // The outbox was just tried: waiting out the broker again would say nothing new.
    if let Some(e @ PublishError::Both { .. }) = stopped {
        return Ok(Report { summary, error: Some(e) });
    }
    let error = match (drain(settings, &mut producer, &mut ledger, progress).await, stopped) {
        (Ok(n), None) => {
            info!(messages = sent + n, leftover, "Outbox delivered.");
            summary.redelivered = leftover;
            None
        }
        (Ok(_), Some(file)) => Some(file),
        (Err(delivery), None) => Some(delivery.into()),
        (Err(delivery), Some(file)) => Some(PublishError::Both { file: Box::new(file), delivery }),
    };
    Ok(Report { summary, error })
}

/// Plans one file into the outbox; when it does not fit, delivers the
/// outbox and tries once more. Returns the file's summary and how many
/// messages were delivered to make room.
async fn accept_file(
    settings: &AgentSettings,
    producer: &mut Sender,
    ledger: &mut Ledger,
    path: &Path,
    progress: bool,
) -> Result<(FileSummary, u64), PublishError> {
    let file = path.display().to_string();
    let started = std::time::Instant::now();
    let export = read_export(path, &settings.exports)?;
    let read_ms = started.elapsed().as_millis() as u64;
    let now = chrono::Utc::now().timestamp_millis();
    let (p, drained) = if pipelined(settings, producer, ledger, export.rows.len()).await? {
        let p = plan_and_send(settings, producer, ledger, &file, export.rows, now).await?;
        (Plan { rejected: export.errors.into_iter().chain(p.rejected).collect(), ..p }.in_line_order(), None)
    } else {
        let p = plan(settings, ledger, &file, export.rows, export.errors, now)?;
        let drained = record(settings, producer, ledger, &file, &p, progress).await?;
        (p, drained)
    };
    let plan_record_ms = started.elapsed().as_millis() as u64 - read_ms;
    for r in &p.rejected {
        warn!(file = %r.file, line = r.line, reason = %r.reason, "Row rejected.");
    }
    for w in &p.warnings {
        warn!(%file, line = w.line, warning = %w.warning, "Export warning.");
    }
    let s = FileSummary { notes: export.notes, ..FileSummary::of_plan(file, &p) };
    info!(file = %s.file, published = s.published, unchanged = s.unchanged, withdrawn = s.withdrawn, rejected = s.rejected, read_ms, plan_record_ms, "Export planned.");
    Ok((s, drained.unwrap_or(0)))
}

/// A file large enough to be worth it goes out while it is being planned
/// and recorded, when nothing older waits in the outbox (it would go out
/// after it), the outbox has room for it whatever its rows turn out to be
/// (at most two messages a row: a withdrawal and a report), and the broker
/// answers (otherwise the usual drain waits for it, and says so). Any
/// other file is planned whole and recorded in one transaction, or not at
/// all.
async fn pipelined(
    settings: &AgentSettings,
    producer: &Sender,
    ledger: &Ledger,
    rows: usize,
) -> Result<bool, PublishError> {
    let fits = (rows as u64).saturating_mul(2) <= settings.spool_limit;
    Ok(rows > BATCH && fits && ledger.outbox_len()? == 0 && producer.answers(&settings.kafka.topic).await)
}

/// Records the plan in one transaction; when it does not fit, delivers the
/// outbox and tries once more. Returns how many messages were delivered to
/// make room.
async fn record(
    settings: &AgentSettings,
    producer: &mut Sender,
    ledger: &mut Ledger,
    file: &str,
    p: &Plan,
    progress: bool,
) -> Result<Option<u64>, PublishError> {
    let mut drained = None;
    // Delivering only removes outbox messages, so the plan stays valid.
    while let Err(e) = ledger.accept(file, &p.entries, &p.messages, None, settings.spool_limit) {
        match e {
            LedgerError::SpoolFull { current, .. } if current > 0 && drained.is_none() => {
                info!(%file, outbox = current, "No room in the outbox: delivering it first.");
                match drain(settings, producer, ledger, progress).await {
                    Ok(n) => drained = Some(n),
                    Err(delivery) => return Err(PublishError::Both { file: Box::new(e.into()), delivery }),
                }
            }
            e => return Err(e.into()),
        }
    }
    Ok(drained)
}

/// Sends the last published revision of every record again: the hub counts
/// nothing twice (R1), so this is safe whenever the hub asks for it.
pub async fn resend(settings: &AgentSettings, progress: bool) -> Result<u64, PublishError> {
    let mut ledger = Ledger::open(&settings.state_dir)?;
    let mut producer = sender(settings)?;
    ledger.requeue_all()?;
    Ok(drain(settings, &mut producer, &mut ledger, progress).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_says_what_became_of_each_file() {
        let mut f = FileSummary { file: "a.csv".into(), published: 2, ..FileSummary::default() };
        assert_eq!(f.status(), "accepted");
        f.rejected = 1;
        assert_eq!(f.status(), "accepted, rows rejected");
        let empty = FileSummary { notes: vec![super::super::export::NO_ROWS.into()], ..FileSummary::default() };
        assert_eq!(empty.status(), "no rows");
        assert_eq!(FileSummary::failed("b.csv".into(), "b.csv: bad CSV header".into()).status(), "failed");
        let later = FileSummary::failed("c.csv".into(), format!("{NOT_READ} the run stopped"));
        assert_eq!(later.status(), "not read");
        // Receipts and --json carry notes and errors only when there are some.
        let json = serde_json::to_value(&f).unwrap();
        assert!(json.get("notes").is_none() && json.get("error").is_none(), "{json}");
    }
}
