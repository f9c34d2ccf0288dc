//! The command line's arguments (clap derive): every subcommand with a
//! short example in its `--help`, every argument with a description.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::report::Format;
use crate::telemetry::LogFormat;

#[derive(Parser, Debug)]
#[command(name = "jointops", version, about = "Police forces share the outcomes of joint operations.")]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text", env = "JOINTOPS_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// A force's producer agent.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The hub's rollup: consume, deduplicate, count; runs until SIGINT/SIGTERM.
    #[command(
        after_help = "Example:\n  jointops rollup --config deploy/local/hub.toml\n  jointops rollup --config hub.toml --rebuild"
    )]
    Rollup {
        /// Config file (TOML); any value can be overridden by JOINTOPS__SECTION__KEY.
        #[arg(long)]
        config: PathBuf,
        /// Replay the whole topic into a fresh store; swap it in once it has
        /// caught up and the running rollup has stopped, then go on live.
        #[arg(long)]
        rebuild: bool,
    },
    /// The coordinators' HTTP API and dashboard, on `[api] listen`; until SIGINT/SIGTERM.
    #[command(after_help = "Example:\n  jointops serve --config hub.toml --rollup")]
    Serve {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Also run the rollup in this process (otherwise run it separately on the same store).
        #[arg(long)]
        rollup: bool,
    },
    /// Bearer tokens for the API: issue (printed once, stored hashed), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The access log: every request under /api/v1/, who, what, when, why and the answer.
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    #[command(
        after_help = "Example:\n  jointops audit --config hub.toml --since 2023-10-09T00:00:00+01:00 --format csv\n  jointops audit verify --config hub.toml"
    )]
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        /// Config file (TOML).
        #[arg(long, required = true)]
        config: Option<PathBuf>,
        /// Only entries at or after this moment (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Output: a table for people, JSON or CSV for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Dead-lettered records: list them, or replay them after a configuration fix.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Event signing keys (contract §7): generate a force's key; measure the cost.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// How far the rollup's store is behind the input topic.
    #[command(after_help = "Example:\n  jointops lag --config hub.toml --wait 60")]
    Lag {
        /// Config file (TOML); any value can be overridden by JOINTOPS__SECTION__KEY.
        #[arg(long)]
        config: PathBuf,
        /// Wait up to this many seconds for the lag to reach zero (exit 1 if it does not).
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Print an operation's joint totals and per-force view from the store.
    #[command(
        after_help = "Example:\n  jointops report --config hub.toml --operation CLIW-2023-10\n  jointops report --config hub.toml --operation CLIW-2023-10 --as-of 2023-10-16T09:00:00+01:00 --format json"
    )]
    Report {
        /// Config file (TOML); any value can be overridden by JOINTOPS__SECTION__KEY.
        #[arg(long)]
        config: PathBuf,
        /// Operation code, e.g. CLIW-2023-10.
        #[arg(long)]
        operation: String,
        /// Output: a table for people, JSON or CSV for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// The figures as they stood at this moment (RFC 3339): every
        /// revision that had reached the topic by then.
        #[arg(long)]
        as_of: Option<String>,
        /// Print what changed since this moment (RFC 3339) up to --as-of (or now).
        #[arg(long)]
        diff_from: Option<String>,
    },
    /// Schema versions in `schemas/`.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Publish a deterministic synthetic stream to the hub's input topic (for
    /// benchmarks and soak tests; operation LOAD-2023, October 2023).
    #[command(
        after_help = "Example:\n  jointops loadgen --config deploy/local/bench-hub.toml --reports 100000 --shape one-outcome"
    )]
    Loadgen {
        /// Config file (TOML); any value can be overridden by JOINTOPS__SECTION__KEY.
        #[arg(long)]
        config: PathBuf,
        /// Reports to generate (about 2.2 events each, with repeats).
        #[arg(long, default_value_t = 100_000)]
        reports: usize,
        /// Seed of the generator: the same seed gives the same stream.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The stream's shape: `one-outcome` puts every report under one
        /// `joint_ref` (the cost of the largest joint outcome).
        #[arg(long, value_enum, default_value = "mixed")]
        shape: crate::loadgen::Shape,
        /// A force's signing key (`keys generate`; repeat for several
        /// forces): that force's events are signed, the others' sent unsigned.
        #[arg(long = "signing-key", value_name = "FILE")]
        signing_keys: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Publish force exports (JSON Lines or CSV): new and changed rows only.
    #[command(after_help = "Example:\n  jointops agent publish --config agents/KENT.toml exports/kent-2023-10-16.csv")]
    Publish {
        /// Config file (TOML); any value can be overridden by JOINTOPS__SECTION__KEY.
        #[arg(long)]
        config: PathBuf,
        /// Do not draw a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Print the summary as JSON (one object per file, with rejected rows).
        #[arg(long)]
        json: bool,
        /// Publish with this operation's new secret although the ledger
        /// published with another: every joint outcome is re-keyed (repeat
        /// for several operations).
        #[arg(long, value_name = "OPERATION")]
        accept_secret_change: Vec<String>,
        /// Force exports: .jsonl/.ndjson/.json (JSON Lines) or .csv.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Send the last published revision of every record again.
    #[command(after_help = "Example:\n  jointops agent resend --config agents/KENT.toml")]
    Resend {
        /// Config file (TOML); any value can be overridden by JOINTOPS__SECTION__KEY.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run as a service on an inbox folder until SIGINT/SIGTERM: publish the
    /// exports renamed into it (in name order), move each to done/ or failed/
    /// with a <name>.receipt.json beside it.
    #[command(after_help = "Example:\n  jointops agent watch --config agents/KENT.toml /srv/jointops/inbox")]
    Watch {
        /// Config file (TOML); any value can be overridden by JOINTOPS__SECTION__KEY.
        #[arg(long)]
        config: PathBuf,
        /// The inbox folder; done/ and failed/ are created inside it.
        inbox: PathBuf,
        /// As for `publish`: accept this operation's new secret (once; remove it after).
        #[arg(long, value_name = "OPERATION")]
        accept_secret_change: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Issue a token and print it once; only its hash is kept.
    #[command(
        after_help = "Example:\n  jointops token issue --config hub.toml --role coordinator --label \"NCLCC desk\"\n  jointops token issue --config hub.toml --role force:KENT --operation CLIW-2023-10 --label \"Kent liaison\""
    )]
    Issue {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// coordinator, or force:CODE for a force's liaison officer.
        #[arg(long)]
        role: String,
        /// An operation the token may read (repeat); none: every operation.
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// Who holds it, for the access log's readers.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Issued tokens (ids, roles, operations; never the tokens).
    #[command(after_help = "Example:\n  jointops token list --config hub.toml --format json")]
    List {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Output: a table for people, JSON or CSV for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Revoke a token by id.
    #[command(after_help = "Example:\n  jointops token revoke --config hub.toml tok_1a2b3c4d")]
    Revoke {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// The token's id, as `token list` shows it (never the token itself).
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the access log's hash chain; name the first entry that does not
    /// fit (exit 1), else print the entry count and the head hash.
    #[command(after_help = "Example:\n  jointops audit verify --config hub.toml")]
    Verify {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// Reason, force, event id and source offset of each dead letter (never payload bytes).
    #[command(after_help = "Example:\n  jointops dlq list --config hub.toml --reason outside-window --format csv")]
    List {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Only this reason code, e.g. unknown-operation.
        #[arg(long)]
        reason: Option<String>,
        /// Output: a table for people, JSON or CSV for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Re-submit dead letters that the current configuration accepts; each is then counted once.
    #[command(after_help = "Example:\n  jointops dlq replay --config hub.toml --reason unknown-operation --dry-run")]
    Replay {
        /// Config file (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Only this reason code, e.g. unknown-operation.
        #[arg(long)]
        reason: Option<String>,
        /// Say what would be replayed, and send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Write a new private signing key (mode 0600, never over an existing
    /// file) and print the hub's `[[trust.keys]]` entry for it.
    #[command(
        after_help = "Example:\n  jointops keys generate --force MPS --id MPS-2026-01 --out /etc/jointops/MPS-2026-01.key"
    )]
    Generate {
        /// The force the key speaks for, e.g. MPS.
        #[arg(long)]
        force: String,
        /// The key's id, [A-Za-z0-9._:-]{1,64}; unique across the hub's keyring.
        #[arg(long)]
        id: String,
        /// Where to write the private key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Time signing and the hub's verification of synthetic events on this machine.
    #[command(after_help = "Example:\n  cargo run --release -- keys bench --events 20000")]
    Bench {
        /// Events to sign and verify.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// Check that every schema parses and each version reads all earlier ones;
    /// print each version's fingerprint.
    #[command(after_help = "Example:\n  jointops schema check --dir schemas")]
    Check {
        /// Folder of `*.vN.avsc` files; the compiled-in schemas if absent.
        #[arg(long, default_value = "schemas")]
        dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// What a command lacks: an example for every command that takes
    /// arguments, a description for every argument.
    fn lacking(c: &clap::Command, path: &str, out: &mut Vec<String>) {
        let name = format!("{path} {}", c.get_name()).trim().to_string();
        let args: Vec<_> = c.get_arguments().filter(|a| !["help", "version"].contains(&a.get_id().as_str())).collect();
        let example = c.get_after_help().is_some_and(|h| h.to_string().starts_with("Example:"));
        if !args.is_empty() && !path.is_empty() && !example {
            out.push(format!("{name}: no example"));
        }
        for a in args.iter().filter(|a| a.get_help().is_none()) {
            out.push(format!("{name} --{}: no description", a.get_id()));
        }
        for s in c.get_subcommands().filter(|s| s.get_name() != "help") {
            lacking(s, &name, out);
        }
    }

    #[test]
    fn every_subcommand_has_an_example_and_every_argument_a_description() {
        let cli = super::Cli::command();
        cli.clone().debug_assert();
        let mut out = Vec::new();
        lacking(&cli, "", &mut out);
        assert!(out.is_empty(), "{out:#?}");
    }
}
