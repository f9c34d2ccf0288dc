//! `jointops keys`: a force's signing key, and the cost of signatures.

use std::process::ExitCode;

use super::KeysCommand;
use crate::telemetry::say;
use crate::trust;

pub fn run(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Generate { force, id, out } => {
            let key = trust::generate(&force, &id)?;
            trust::write_signing_key(&out, &key)?;
            say(&format!("wrote {} (mode 0600); give the hub this entry:", out.display()));
            print!("{}", trust::keyring_entry(&key));
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Bench { events } => {
            let c = trust::measure(events);
            let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
            let cpu = |d: Option<std::time::Duration>| d.map_or("?".to_string(), |d| format!("{:.1}", us(d)));
            println!(
                "{} events of {} bytes, one thread: sign {:.1} µs/event ({} µs CPU), verify {:.1} µs/event ({} µs CPU)",
                c.events,
                c.value_bytes,
                us(c.sign),
                cpu(c.sign_cpu),
                us(c.verify),
                cpu(c.verify_cpu)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
