//! Logging: tracing to stderr, as text or JSON, filtered by `RUST_LOG`
//! (default `info`; librdkafka's own chatter stays at `warn`); and the
//! Prometheus metrics ([`metrics`]).

pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

static JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// A line for the person at the terminal, on stderr: as it is, or, with
/// JSON logs, as a JSON log line (so that every line on stderr is JSON).
pub fn say(text: &str) {
    if JSON.get().copied().unwrap_or(false) {
        tracing::warn!("{text}");
    } else {
        eprintln!("{text}");
    }
}

pub fn init(format: LogFormat) {
    let _ = JSON.set(format == LogFormat::Json);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
