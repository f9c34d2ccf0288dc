//! `agent watch`: the agent as a service on an inbox folder. Files renamed
//! into the inbox are accepted in name order into the outbox (planned, with
//! their run, in one ledger transaction), even while the broker is down, up
//! to `spool_limit`. The outbox is sent continuously, with backoff while
//! Kafka does not acknowledge. Once all of a file's messages are
//! acknowledged, its receipt is written and it moves to `done/`. A file that
//! cannot be read at all goes to `failed/` with an error receipt.
//!
//! A file accepted before a stop or a crash is still in the inbox, and its
//! run (name, SHA-256, plan summary) is in the ledger: the next start sends
//! its messages and writes the receipt the first attempt would have written,
//! instead of planning it again (which would find every row unchanged).
//!
//! The inbox contract (a file is complete once renamed in) is checked, not
//! trusted: a file is taken only once its size and modification time have
//! held for `watch.settle_ms` and no process holds it open for writing, and
//! one whose bytes differ from what was read when it is finished goes to
//! `failed/` with a receipt naming what the read published.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::sync::watch as signal;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::deliver::{producer, send_batch, Backoff, BatchResult, DeliveryError, Producer, BATCH};
use super::export::{read_export_with, Format};
use super::inbox::{self, FailedReceipt, Receipt};
use super::ledger::{Ledger, LedgerError, NewRun, Run, RunState};
use super::plan::plan;
use super::publish::FileSummary;
use super::secrets::{check_secrets, SecretError};
use crate::config::AgentSettings;

/// How often the inbox is looked at.
pub const POLL: Duration = Duration::from_millis(500);
/// How long a stop may wait for messages already in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("inbox {path}: {source}")]
    Inbox { path: String, source: std::io::Error },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("agent ledger: the recorded summary of {file} (run {run}) cannot be read back: {source}")]
    Summary { file: String, run: i64, source: serde_json::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WatchError + '_ {
    move |source| WatchError::Inbox { path: path.display().to_string(), source }
}

/// What the daemon is doing, published after every step (and returned at
/// the end): for tests, and for whoever embeds the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchStatus {
    /// Messages not yet acknowledged by Kafka.
    pub outbox: u64,
    /// Files accepted into the outbox whose messages are not all delivered
    /// yet (they stay in the inbox until then).
    pub accepted: Vec<String>,
    /// Files moved to `done/` and `failed/` since the start.
    pub done: u64,
    pub failed: u64,
    /// Messages acknowledged since the start.
    pub delivered: u64,
    /// Delivery attempts that failed since the start.
    pub failed_attempts: u64,
    /// A file waiting for room in the outbox (`spool_limit`).
    pub waiting: Option<String>,
}

pub type WatchStats = WatchStatus;

/// A file accepted into the outbox, waiting for its messages to be delivered.
struct Accepted {
    run: Run,
    name: String,
    path: PathBuf,
    summary: FileSummary,
}

/// The daemon. `status()` may be called before `run`.
pub struct Watcher {
    settings: AgentSettings,
    inbox: PathBuf,
    status: signal::Sender<WatchStatus>,
}

/// Runs `agent watch` on `inbox` until `shutdown` resolves.
pub async fn watch(
    settings: &AgentSettings,
    inbox: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<WatchStats, WatchError> {
    Watcher::new(settings, inbox).run(shutdown).await
}

impl Watcher {
    pub fn new(settings: &AgentSettings, inbox: &Path) -> Self {
        Watcher {
            settings: settings.clone(),
            inbox: inbox.to_path_buf(),
            status: signal::Sender::new(WatchStatus::default()),
        }
    }

    pub fn status(&self) -> signal::Receiver<WatchStatus> {
        self.status.subscribe()
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<WatchStats, WatchError> {
        tokio::pin!(shutdown);
        // Polled once before anything else: a signal future installs its
        // handler on first poll, and a SIGTERM during start-up must stop the
        // daemon cleanly rather than kill it.
        let mut stopping = futures::poll!(&mut shutdown).is_ready();
        let mut d = Daemon::start(self.settings, &self.inbox, self.status)?;
        let mut inflight: Option<Pin<Box<dyn Future<Output = BatchResult> + Send>>> = None;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !stopping {
            if inflight.is_none() {
                inflight = d.next_batch()?;
            }
            tokio::select! {
                biased;
                _ = &mut shutdown => stopping = true,
                r = async { inflight.as_mut().expect("guarded by the branch condition").await }, if inflight.is_some() => {
                    inflight = None;
                    d.on_batch(r)?;
                }
                _ = tick.tick() => d.scan()?,
            }
            d.finish_delivered()?;
            d.publish_status()?;
        }
        // Accept nothing more; let what is in flight land, for a while, so
        // that a stop on a healthy broker leaves no file half delivered.
        info!(accepted = d.accepted.len(), "Stopping.");
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        loop {
            let Some(batch) = inflight.take().map_or_else(|| d.next_batch(), |f| Ok(Some(f)))? else { break };
            match tokio::time::timeout_at(deadline, batch).await {
                Ok(r) if r.failed == 0 => d.on_batch(r)?,
                Ok(r) => {
                    d.on_batch(r)?;
                    break;
                }
                // Dropped unacknowledged: the messages stay in the outbox.
                Err(_) => break,
            }
        }
        d.finish_delivered()?;
        d.publish_status()?;
        let status = d.status.borrow().clone();
        info!(done = status.done, failed = status.failed, left_in_outbox = status.outbox, "Stopped.");
        Ok(status)
    }
}

/// The daemon's state between steps.
struct Daemon {
    settings: AgentSettings,
    inbox: PathBuf,
    done: PathBuf,
    failed: PathBuf,
    ledger: Ledger,
    producer: Producer,
    accepted: Vec<Accepted>,
    /// Inbox files not taken yet, and since when each has been still.
    settling: inbox::Settling,
    /// The file last found open for writing (said once, not every poll).
    held_open: Option<PathBuf>,
    /// A file refused for lack of room and the messages it needs.
    waiting: Option<(PathBuf, u64)>,
    /// Messages in the outbox: counted once at the start, then kept up to
    /// date here rather than counted again after every batch.
    outbox: u64,
    /// Messages after this seq have not been handed to the producer yet.
    after: i64,
    backoff: Backoff,
    retry_at: Instant,
    failing: bool,
    status: signal::Sender<WatchStatus>,
}

impl Daemon {
    fn start(settings: AgentSettings, inbox: &Path, status: signal::Sender<WatchStatus>) -> Result<Self, WatchError> {
        // Series at zero from the start, so that the first file or record counts.
        metrics::counter!("jointops_agent_records_published_total").increment(0);
        for result in ["accepted", "rejected"] {
            metrics::counter!("jointops_agent_files_total", "result" => result).increment(0);
        }
        let inbox = inbox.canonicalize().map_err(io_err(inbox))?;
        let (done, failed) = (inbox.join(inbox::DONE), inbox.join(inbox::FAILED));
        for dir in [&done, &failed] {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut ledger = Ledger::open(&settings.state_dir)?;
        check_secrets(&settings, &mut ledger, now_ms())?;
        let producer = producer(&settings)?;
        let mut d = Daemon {
            settings,
            inbox,
            done,
            failed,
            ledger,
            producer,
            accepted: Vec::new(),
            settling: inbox::Settling::default(),
            held_open: None,
            waiting: None,
            outbox: 0,
            after: 0,
            backoff: Backoff::new(),
            retry_at: Instant::now(),
            failing: false,
            status,
        };
        d.resume()?;
        d.outbox = d.ledger.outbox_len()?;
        info!(inbox = %d.inbox.display(), state_dir = %d.settings.state_dir.display(), outbox = d.outbox, resumed = d.accepted.len(), "Watching.");
        d.publish_status()?;
        Ok(d)
    }

    /// Picks up the runs of this inbox that an earlier process accepted but
    /// did not finish.
    fn resume(&mut self) -> Result<(), WatchError> {
        for run in self.ledger.open_runs()? {
            let path = PathBuf::from(&run.source);
            // Another inbox's run: it resumes when that inbox is watched.
            if path.parent() != Some(self.inbox.as_path()) {
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if run.dest.as_ref().is_some_and(|d| Path::new(d).exists()) {
                // Stopped between moving the file and recording it.
                self.ledger.close_run(run.id, RunState::Finished, now_ms())?;
                continue;
            }
            let summary = serde_json::from_str(&run.summary).map_err(|source| WatchError::Summary {
                file: run.source.clone(),
                run: run.id,
                source,
            })?;
            info!(file = %name, run = run.id, "Resuming a file accepted before the last stop.");
            // Whether it changed meanwhile is checked when it is finished.
            self.accepted.push(Accepted { run, name, path, summary });
        }
        Ok(())
    }

    /// Accepts the inbox's new files in name order, stopping at the first one
    /// the outbox has no room for, so that files are never applied out of order.
    fn scan(&mut self) -> Result<(), WatchError> {
        let files = inbox::ready_files(&self.inbox).map_err(io_err(&self.inbox))?;
        let settle = Duration::from_millis(self.settings.watch.settle_ms);
        self.settling.retain(&files);
        // Every file is watched settling at once, not one after the other.
        let now = Instant::now().into_std();
        let mut stamped = Vec::new();
        for (name, path) in files {
            if self.accepted.iter().any(|a| a.path == path) {
                continue;
            }
            let Ok(stamp) = inbox::Stamp::of(&path) else { continue };
            let settled = self.settling.settled(&path, stamp, now, settle);
            stamped.push((name, path, settled));
        }
        for (name, path, settled) in stamped {
            // Still being written: it and the files after it wait, so that
            // files are never applied out of name order.
            if !settled {
                return Ok(());
            }
            if inbox::open_for_writing(&path) {
                if self.held_open.as_ref() != Some(&path) {
                    warn!(file = %name, "A file in the inbox is open for writing: it and the files after it wait. Export jobs should write elsewhere and rename the file in.");
                    self.held_open = Some(path);
                }
                return Ok(());
            }
            if let Some((waiting, need)) = &self.waiting {
                if *waiting == path && self.outbox.saturating_add(*need) > self.settings.spool_limit {
                    return Ok(());
                }
            }
            if !self.take(&name, &path)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Accepts one file or fails it; `false` when it must wait for room.
    fn take(&mut self, name: &str, path: &Path) -> Result<bool, WatchError> {
        let before = inbox::Stamp::of(path).ok();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return self.fail(name, path, &format!("cannot read: {e}"), None).map(|_| true),
        };
        // Written to while being read: what was read may be cut short.
        if before.is_none() || inbox::Stamp::of(path).ok() != before {
            self.settling.forget(path);
            return Ok(false);
        }
        self.settling.forget(path);
        let sha256 = inbox::sha256_hex(&bytes);
        let format = match Format::of_path(path) {
            Ok(f) => f,
            Err(reason) => return self.fail(name, path, &reason, None).map(|_| true),
        };
        let export = match read_export_with(bytes.as_slice(), format, name, &self.settings.exports) {
            Ok(r) => r,
            Err(e) => return self.fail(name, path, &e.to_string(), None).map(|_| true),
        };
        let now = now_ms();
        let p = plan(&self.settings, &self.ledger, name, export.rows, export.errors, now)?;
        let summary = FileSummary { notes: export.notes, ..FileSummary::of_plan(name.to_string(), &p) };
        let json = serde_json::to_string(&summary).expect("a summary always serialises");
        let source = path.display().to_string();
        let run = NewRun { source: &source, sha256: &sha256, summary: &json, planned_at: now };
        let limit = self.settings.spool_limit;
        match self.ledger.accept(name, &p.entries, &p.messages, Some(run), limit) {
            Ok(id) => {
                let run =
                    self.ledger.open_runs()?.into_iter().find(|r| Some(r.id) == id).expect("the run just recorded");
                for r in &p.rejected {
                    debug!(file = %name, line = r.line, reason = %r.reason, "Row rejected.");
                }
                info!(file = %name, published = summary.published, unchanged = summary.unchanged, withdrawn = summary.withdrawn, rejected = summary.rejected, "File accepted.");
                if !summary.warnings.is_empty() {
                    warn!(file = %name, warnings = summary.warnings.len(), "File accepted with warnings (listed in its receipt).");
                }
                self.waiting = None;
                metrics::counter!("jointops_agent_files_total", "result" => "accepted").increment(1);
                self.outbox += p.messages.len() as u64;
                self.accepted.push(Accepted { run, name: name.to_string(), path: path.to_path_buf(), summary });
                Ok(true)
            }
            // Bigger than the whole outbox may ever be: waiting cannot help.
            Err(e @ LedgerError::SpoolFull { adding, .. }) if adding > limit => {
                self.fail(name, path, &e.to_string(), None).map(|_| true)
            }
            Err(e @ LedgerError::SpoolFull { adding, .. }) => {
                if self.waiting.as_ref().is_none_or(|(w, _)| w != path) {
                    warn!(file = %name, error = %e, "Waiting for room in the outbox.");
                }
                self.waiting = Some((path.to_path_buf(), adding));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a file to `failed/` with its error receipt: one that cannot be
    /// read at all, or (with what its read published) one that changed.
    fn fail(&mut self, name: &str, path: &Path, error: &str, read: Option<&FileSummary>) -> Result<(), WatchError> {
        let dest = inbox::free_name(&self.failed, name);
        let receipt = FailedReceipt { file: name, error, read, finished_at: inbox::now_rfc3339() };
        inbox::write_receipt(&self.failed, &dest, &receipt).map_err(io_err(&self.failed))?;
        inbox::move_into(path, &self.failed, &dest).map_err(io_err(path))?;
        warn!(file = %name, %error, "File failed.");
        metrics::counter!("jointops_agent_files_total", "result" => "rejected").increment(1);
        self.status.send_modify(|s| s.failed += 1);
        Ok(())
    }

    /// The next batch to hand to the producer, unless in backoff or empty.
    #[allow(clippy::type_complexity)]
    fn next_batch(&mut self) -> Result<Option<Pin<Box<dyn Future<Output = BatchResult> + Send>>>, WatchError> {
        if Instant::now() < self.retry_at {
            return Ok(None);
        }
        let batch = self.ledger.pending_after(self.after, BATCH)?;
        if batch.is_empty() {
            return Ok(None);
        }
        self.after = batch.last().map_or(self.after, |m| m.seq);
        let topic = self.settings.kafka.topic.clone();
        Ok(Some(Box::pin(send_batch(self.producer.clone(), topic, batch, ProgressBar::hidden()))))
    }

    fn on_batch(&mut self, r: BatchResult) -> Result<(), WatchError> {
        let forgot = self.ledger.acknowledge(&r.acked)?;
        metrics::counter!("jointops_agent_records_published_total").increment(r.acked.len() as u64);
        self.outbox = self.outbox.saturating_sub(forgot);
        self.status.send_modify(|s| s.delivered += r.acked.len() as u64);
        if r.failed == 0 {
            if std::mem::take(&mut self.failing) {
                info!(bootstrap = %self.settings.kafka.bootstrap, "Delivery resumed.");
            }
            self.backoff.reset();
            return Ok(());
        }
        let wait = self.backoff.step();
        warn!(
            bootstrap = %self.settings.kafka.bootstrap,
            failed = r.failed,
            acked = r.acked.len(),
            error = r.first_error.as_deref().unwrap_or(""),
            retry_in_ms = wait.as_millis() as u64,
            "Delivery failed; the messages stay in the outbox."
        );
        self.failing = true;
        self.status.send_modify(|s| s.failed_attempts += 1);
        self.retry_at = Instant::now() + wait;
        // Everything not acknowledged goes again, oldest first, through a
        // fresh producer: one that hit a fatal error would refuse forever.
        self.after = 0;
        self.producer = self.producer.renewed(&self.settings)?;
        Ok(())
    }

    /// Writes the receipt of every accepted file whose messages are all
    /// acknowledged, and moves it to `done/`.
    fn finish_delivered(&mut self) -> Result<(), WatchError> {
        let mut i = 0;
        while i < self.accepted.len() {
            // A writer still at it would write into the moved file.
            let a = &self.accepted[i];
            if self.ledger.delivered(&a.run)? && !inbox::open_for_writing(&a.path) {
                let a = self.accepted.remove(i);
                self.finish(a)?;
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    fn finish(&mut self, a: Accepted) -> Result<(), WatchError> {
        let id = a.run.id;
        // Removed while its messages were out: nothing is left to move.
        let Ok(bytes) = std::fs::read(&a.path) else {
            warn!(file = %a.name, run = id, "An accepted file left the inbox before its receipt; its rows are delivered all the same.");
            self.ledger.close_run(id, RunState::Abandoned, now_ms())?;
            return Ok(());
        };
        let current = inbox::sha256_hex(&bytes);
        if current != a.run.sha256 {
            return self.fail_changed(a, &current, bytes.len());
        }
        // The destination is recorded first, so that a stop between the move
        // and the close is recognised on the next start.
        let dest = match a.run.dest.as_deref().and_then(|d| Path::new(d).file_name()) {
            Some(n) => n.to_string_lossy().into_owned(),
            None => inbox::free_name(&self.done, &a.name),
        };
        self.ledger.set_dest(id, &self.done.join(&dest).display().to_string())?;
        let receipt = Receipt { summary: &a.summary, finished_at: inbox::now_rfc3339() };
        inbox::write_receipt(&self.done, &dest, &receipt).map_err(io_err(&self.done))?;
        inbox::move_into(&a.path, &self.done, &dest).map_err(io_err(&a.path))?;
        self.ledger.close_run(id, RunState::Finished, now_ms())?;
        let s = &a.summary;
        info!(file = %a.name, published = s.published, unchanged = s.unchanged, withdrawn = s.withdrawn, rejected = s.rejected, "File done.");
        self.status.send_modify(|s| s.done += 1);
        Ok(())
    }

    /// A file whose bytes are not the ones read: what the read published is
    /// delivered, and the rest must not pass for handled, so it goes to
    /// `failed/` with a receipt that says both.
    fn fail_changed(&mut self, a: Accepted, sha256: &str, len: usize) -> Result<(), WatchError> {
        let error = format!(
            "the file changed after it was read (SHA-256 {} when read, {sha256} now, {len} bytes): the rows read \
             then were published as \"read\" says, and what changed since was not read. Hand the file in again \
             whole (write it elsewhere, then rename it into the inbox): rows already published publish nothing",
            a.run.sha256
        );
        let dest = inbox::free_name(&self.failed, &a.name);
        self.ledger.set_dest(a.run.id, &self.failed.join(&dest).display().to_string())?;
        self.fail(&a.name, &a.path, &error, Some(&a.summary))?;
        self.ledger.close_run(a.run.id, RunState::Abandoned, now_ms())?;
        Ok(())
    }

    fn publish_status(&mut self) -> Result<(), WatchError> {
        let outbox = self.outbox;
        // Files are delivered in the order they were accepted: the oldest
        // pending message is in the first accepted file still here.
        let oldest = self.accepted.first().filter(|_| outbox > 0).map_or(0, |a| (now_ms() - a.run.planned_at).max(0));
        metrics::gauge!("jointops_agent_outbox_depth").set(outbox as f64);
        metrics::gauge!("jointops_agent_outbox_oldest_pending_age_seconds").set(oldest as f64 / 1000.0);
        let accepted: Vec<String> = self.accepted.iter().map(|a| a.name.clone()).collect();
        let waiting = self.waiting.as_ref().map(|(p, _)| p.display().to_string());
        self.status.send_if_modified(|s| {
            let changed = s.outbox != outbox || s.accepted != accepted || s.waiting != waiting;
            (s.outbox, s.accepted, s.waiting) = (outbox, accepted, waiting);
            changed
        });
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
