//! The `jointops` binary: parse, start telemetry, dispatch, exit code.

use std::process::ExitCode;

use clap::Parser;
use jointops::cli::{dispatch, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    jointops::telemetry::init(cli.log_format);
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
