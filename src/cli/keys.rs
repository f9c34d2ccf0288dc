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
            println!(
                "{} events of {} bytes: sign {:.1} µs/event, verify {:.1} µs/event (one core)",
                c.events,
                c.value_bytes,
                c.sign.as_secs_f64() * 1e6,
                c.verify.as_secs_f64() * 1e6
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
