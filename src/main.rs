//! The `jointops` binary: parse, start telemetry, dispatch, exit code.

use std::process::ExitCode;

use clap::Parser;
use jointops::cli::{dispatch, Cli};
use jointops::telemetry::LogFormat;

/// mimalloc: the agent and the rollup make and free millions of small
/// strings and buffers per run, and glibc's allocator spent a third of a
/// 200,000-row publish consolidating and freeing them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    jointops::telemetry::init(format);
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            // With JSON logs, every line on stderr is JSON: the fatal one too.
            match format {
                LogFormat::Text => eprintln!("error: {e:#}"),
                LogFormat::Json => tracing::error!(error = %format!("{e:#}"), "Failed."),
            }
            ExitCode::FAILURE
        }
    }
}
