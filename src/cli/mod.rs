//! The command line (clap derive) and what each subcommand does.

mod args;
mod keys;
mod records;

pub use args::{AgentCommand, AuditCommand, Cli, Command, DlqCommand, KeysCommand, SchemaCommand, TokenCommand};

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::codec::Registry;
use crate::config::{AgentSettings, HubSettings};
use crate::report::{self, Format};
use crate::store::{DeadLetterLog, SqliteStore, TotalsReader};
use crate::telemetry::say;
use crate::{agent, rollup};

/// Exit code when some export rows were rejected (the rest was published).
pub const EXIT_ROWS_REJECTED: u8 = 2;

/// Every file given and what became of it, then why the run stopped, if it did.
fn print_publish(report: &agent::Report, json: bool) -> anyhow::Result<()> {
    let summary = &report.summary;
    if json {
        let mut value = serde_json::to_value(summary)?;
        if let Some(e) = &report.error {
            value["error"] = format!("{e:#}").into();
        }
        println!("{value}");
        return Ok(());
    }
    for f in &summary.files {
        for r in &f.rejections {
            say(&format!("{}:{}: rejected: {}", f.file, r.line, r.reason));
        }
        for w in &f.warnings {
            let at = w.line.map_or(String::new(), |l| format!(":{l}"));
            say(&format!("{}{at}: warning: {}", f.file, w.warning));
        }
        for n in &f.notes {
            say(&format!("{}: note: {n}", f.file));
        }
        match &f.error {
            Some(e) if e.starts_with(&f.file) => say(e),
            Some(e) => say(&format!("{}: {e}", f.file)),
            None => {}
        }
    }
    let row = |file: &str, status: &str, f: &agent::FileSummary| {
        println!(
            "{file:<40} {status:<24} {:>10} {:>10} {:>10} {:>10}",
            f.published, f.unchanged, f.withdrawn, f.rejected
        )
    };
    println!(
        "{:<40} {:<24} {:>10} {:>10} {:>10} {:>10}",
        "file", "status", "published", "unchanged", "withdrawn", "rejected"
    );
    for f in &summary.files {
        row(&f.file, f.status(), f);
    }
    row("total", "", &summary.total());
    let warned: usize = summary.files.iter().map(|f| f.warnings.len()).sum();
    if warned > 0 {
        println!("({warned} warnings, listed on stderr: published, but worth a look)");
    }
    if summary.redelivered > 0 {
        println!("(also delivered {} messages left from an earlier run)", summary.redelivered);
    }
    if let Some(e) = &report.error {
        say(&format!("error: {e:#}"));
    }
    Ok(())
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Agent(AgentCommand::Publish { config, no_progress, json, files, accept_secret_change }) => {
            let mut settings = AgentSettings::load(&config)?;
            settings.accept_secret_change.extend(accept_secret_change);
            let report = agent::publish_report(&settings, &files, !no_progress).await?;
            print_publish(&report, json)?;
            let code = match &report.error {
                Some(_) => ExitCode::FAILURE,
                None if report.summary.total().rejected > 0 => ExitCode::from(EXIT_ROWS_REJECTED),
                None => ExitCode::SUCCESS,
            };
            Ok(code)
        }
        Command::Agent(AgentCommand::Resend { config }) => {
            let settings = AgentSettings::load(&config)?;
            let n = agent::resend(&settings, true).await?;
            println!("resent {n} messages");
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCommand::Watch { config, inbox, accept_secret_change }) => {
            let mut settings = AgentSettings::load(&config)?;
            settings.accept_secret_change.extend(accept_secret_change);
            let listen = settings.metrics.listen.clone();
            with_metrics(listen.as_deref(), agent::watch(&settings, &inbox, shutdown_signal())).await??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollup { config, rebuild } => {
            let settings = HubSettings::load(&config)?;
            let listen = settings.metrics.listen.clone();
            if rebuild {
                with_metrics(listen.as_deref(), rollup::run_rebuild(&settings, shutdown_signal())).await??;
            } else {
                let store = SqliteStore::open(&settings.store.path)?;
                with_metrics(listen.as_deref(), rollup::run(&settings, Box::new(store), shutdown_signal())).await??;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config, rollup } => {
            let settings = HubSettings::load(&config)?;
            let listener = tokio::net::TcpListener::bind(&settings.api.listen)
                .await
                .with_context(|| format!("cannot listen on {}", settings.api.listen))?;
            if rollup {
                serve_with_rollup(settings, listener).await?;
            } else {
                crate::api::serve(settings, listener, shutdown_signal()).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(command) => records::token(command),
        Command::Audit { command: Some(AuditCommand::Verify { config }), .. } => records::verify(&config),
        Command::Audit { command: None, config, since, format } => {
            records::audit(&config.expect("clap requires --config"), since.as_deref(), format)
        }
        Command::Dlq(DlqCommand::List { config, reason, format }) => {
            let settings = HubSettings::load(&config)?;
            anyhow::ensure!(settings.store.path.exists(), "no store at {}", settings.store.path.display());
            let store = SqliteStore::open_read(&settings.store.path)?;
            let mut out = report::DeadLetterWriter::new(format, std::io::stdout().lock())?;
            let mut failed = None;
            store.each_dead_letter(reason.as_deref(), false, &mut |d| match out.row(&d) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })?;
            failed.map_or(Ok(()), Err)?;
            out.finish()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(DlqCommand::Replay { config, reason, dry_run }) => {
            if let Some(r) = &reason {
                anyhow::ensure!(crate::domain::Reason::parse(r).is_some(), "{r:?} is not a reason code");
            }
            let settings = HubSettings::load(&config)?;
            let outcome = rollup::replay::replay(&settings, reason.as_deref(), dry_run).await?;
            for ((t, p, o), code, detail) in &outcome.still_refused {
                println!("still refused  {t}/{p}/{o}  {code}: {detail}");
            }
            if outcome.rollup_running && !outcome.replayed.is_empty() {
                say(&format!(
                    "warning: a rollup is running on {} (it holds {}) with the configuration it started with: \
                     restart it so that it reads the corrected one, or it refuses the replayed records again",
                    settings.store.path.display(),
                    rollup::lock_path(&settings.store.path).display()
                ));
            }
            let verb = if dry_run { "would replay" } else { "replayed" };
            println!("{verb} {} dead letters; {} still refused", outcome.replayed.len(), outcome.still_refused.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Lag { config, wait } => lag(&HubSettings::load(&config)?, wait),
        Command::Report { config, operation, format, as_of, diff_from } => {
            let settings = HubSettings::load(&config)?;
            let path = &settings.store.path;
            anyhow::ensure!(path.exists(), "no store at {}: has the rollup run yet?", path.display());
            let store = SqliteStore::open_read(path)?;
            let operations = settings.operations().map_err(anyhow::Error::msg)?;
            if operations.get(&operation).is_none() {
                // Zeros for a mistyped code would read as a real report.
                if store.totals(&operation)?.is_none() {
                    return Err(anyhow::Error::new(operations.unknown(&operation))
                        .context(format!("nothing to report: not in {} nor in the store", config.display())));
                }
                say(&format!("warning: operation {operation:?} is not in {}", config.display()));
            }
            let at = as_of
                .as_deref()
                .map(|t| crate::config::parse_instant("--as-of", t))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let mut totals = match at {
                None => store.totals(&operation)?.unwrap_or_default(),
                Some(at) => crate::asof::totals_as_of(&store, &operations, &operation, at)?,
            };
            if let Some(from) = &diff_from {
                let from = crate::config::parse_instant("--diff-from", from).map_err(anyhow::Error::msg)?;
                let before = crate::asof::totals_as_of(&store, &operations, &operation, from)?;
                totals = crate::asof::diff(&before, &totals);
            }
            let dead = store.dead_letter_counts()?;
            match format {
                Format::Table => print!("{}", report::to_table(&operation, &totals, &dead)),
                Format::Json => {
                    println!("{}", serde_json::to_string_pretty(&report::to_json(&operation, &totals, &dead))?)
                }
                Format::Csv => print!("{}", report::to_csv(&totals)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(command) => keys::run(command),
        Command::Schema(SchemaCommand::Check { dir }) => schema_check(&dir),
        Command::Loadgen { config, reports, seed, shape, signing_keys } => {
            let settings = HubSettings::load(&config)?;
            let mut keys = std::collections::HashMap::new();
            for path in &signing_keys {
                let k = crate::trust::load_signing_key(path)?;
                keys.insert(k.force.clone(), k);
            }
            let n = loadgen(&settings, crate::loadgen::generate_shape(shape, reports, seed), &keys).await?;
            println!("published {n} events for {reports} reports to {}", settings.kafka.topic);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn schema_check(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let registry = if dir.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "avsc") {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                files.push((path.file_name().unwrap_or_default().to_string_lossy().into_owned(), text));
            }
        }
        Registry::from_files(files).map_err(anyhow::Error::msg)?
    } else {
        say(&format!("{} is not a folder: checking the schemas compiled into this binary", dir.display()));
        Registry::from_files(crate::codec::SCHEMA_FILES.iter().map(|(f, j)| (f.to_string(), j.to_string())))
            .map_err(anyhow::Error::msg)?
    };
    for v in registry.versions() {
        let wire: String = v.fingerprint.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect();
        println!("v{}  {}  CRC-64-AVRO {:016x} (header bytes {wire})", v.version, v.file, v.fingerprint);
    }
    match registry.check_compatibility() {
        Ok(()) => {
            println!("ok: {} version(s), each reads every earlier one", registry.versions().len());
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in problems {
                say(&format!("incompatible: {p}"));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn lag(settings: &HubSettings, wait: Option<u64>) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_secs(wait.unwrap_or(0));
    loop {
        let lag = rollup::lag(settings)?;
        let behind = lag.total();
        if behind == 0 || Instant::now() >= deadline {
            for p in &lag.partitions {
                println!(
                    "{}/{}: end {}, stored {}, lag {}",
                    settings.kafka.topic,
                    p.partition,
                    p.end,
                    p.stored,
                    p.lag()
                );
            }
            println!("total lag {behind}");
            return Ok(if behind == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Publishes `events`, each signed with its force's key in `keys` if there
/// is one (contract §7).
async fn loadgen(
    settings: &HubSettings,
    events: Vec<crate::domain::OutcomeEvent>,
    keys: &std::collections::HashMap<String, crate::trust::LoadedKey>,
) -> anyhow::Result<usize> {
    use futures::stream::{FuturesUnordered, TryStreamExt};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let k = &settings.kafka;
    let base = crate::kafka::client_config(&k.bootstrap, &[], &k.librdkafka);
    crate::kafka::ensure_topics(&base, &k.topic, &k.dlq_topic, crate::kafka::TopicSpec::of(k)).await?;
    let producer: FutureProducer =
        crate::kafka::client_config(&k.bootstrap, crate::kafka::PRODUCER_DEFAULTS, &k.librdkafka).create()?;
    let registry = Registry::builtin();
    for chunk in events.chunks(20_000) {
        let encoded: Vec<(String, Vec<u8>, Option<&crate::trust::LoadedKey>)> =
            chunk.iter().map(|e| (e.identity_key(), registry.encode(e), keys.get(&e.force))).collect();
        let sends: FuturesUnordered<_> = encoded
            .iter()
            .map(|(key, value, signer)| {
                let mut record = FutureRecord::to(&k.topic).key(key).payload(value);
                if let Some(s) = signer {
                    let signature = crate::trust::sign(&s.key, key.as_bytes(), value);
                    let headers = OwnedHeaders::new()
                        .insert(Header { key: crate::trust::KEY_ID_HEADER, value: Some(s.id.as_bytes()) })
                        .insert(Header { key: crate::trust::SIGNATURE_HEADER, value: Some(&signature[..]) });
                    record = record.headers(headers);
                }
                producer.send(record, Duration::from_secs(60))
            })
            .collect();
        sends.map_err(|(e, _)| e).try_collect::<Vec<_>>().await?;
    }
    Ok(events.len())
}

/// Runs `work`, serving `/metrics` on `listen` (`[metrics] listen`) while
/// it runs. The address is bound first: a bad one stops the start.
async fn with_metrics<T>(listen: Option<&str>, work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let Some(listen) = listen else { return Ok(work.await) };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = crate::telemetry::metrics::bind(listen).await?;
    let server = tokio::spawn(crate::telemetry::metrics::serve(listener, async {
        let _ = stopped.await;
    }));
    let out = work.await;
    let _ = stop.send(());
    server.await.map_err(|e| anyhow::anyhow!("the metrics server panicked: {e}"))??;
    Ok(out)
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when first polled, so a signal during start-up is not lost.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("Shutdown requested.");
    }
}

/// `serve --rollup`: the API and the rollup in one process, with one
/// shutdown. When either half ends on its own (an error, a panic), the other
/// is stopped and the process fails, so that a supervisor restarts it rather
/// than leaving an API that serves the frozen figures of a dead rollup.
async fn serve_with_rollup(settings: HubSettings, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let store = SqliteStore::open(&settings.store.path)?;
    let (stop, stopped) = shared_shutdown();
    let s = settings.clone();
    let rollup_stops = stopped();
    let mut rollup = tokio::spawn(async move { rollup::run(&s, Box::new(store), rollup_stops).await });
    let api = crate::api::serve(settings, listener, stopped());
    tokio::pin!(api);
    let requested = || *stop.borrow();
    tokio::select! {
        ended = &mut rollup => {
            let was_asked = requested();
            stop.send_replace(true);
            let api_result = api.await;
            let rollup_result = ended.map_err(|e| anyhow::anyhow!("the rollup panicked: {e}"))?;
            rollup_result.context("the rollup stopped")?;
            anyhow::ensure!(was_asked, "the rollup stopped without being asked to");
            api_result
        }
        ended = &mut api => {
            let was_asked = requested();
            stop.send_replace(true);
            let rollup_result = rollup.await.map_err(|e| anyhow::anyhow!("the rollup panicked: {e}"))?;
            ended.context("the API stopped")?;
            anyhow::ensure!(was_asked, "the API stopped without being asked to");
            rollup_result.map(|_| ())
        }
    }
}

type Stopped = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One shutdown shared by several parts of one process: a signal, or the
/// returned sender, stops every future the returned function makes.
fn shared_shutdown() -> (std::sync::Arc<tokio::sync::watch::Sender<bool>>, impl Fn() -> Stopped) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let tx = std::sync::Arc::new(tx);
    let signal = shutdown_signal();
    let on_signal = tx.clone();
    tokio::spawn(async move {
        signal.await;
        on_signal.send_replace(true);
    });
    let stopped = move || -> Stopped {
        let mut rx = rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|stop| *stop).await;
        })
    };
    (tx, stopped)
}
