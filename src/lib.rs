//! jointops: police forces share the outcomes of joint operations.
//!
//! Module map (what lives where, and what does not):
//!
//! - [`domain`]: pure. Events, validity, the hub's operations (R6), the
//!   counting engine (R1–R5) and totals. No I/O, no Kafka, SQL or Avro.
//! - [`codec`]: Avro single-object encoding of events: the schema versions in
//!   `schemas/`, fingerprints, a fast codec for the current version and
//!   schema resolution for older ones. No Kafka.
//! - [`agent`]: a force's producer agent: export readers (JSONL/CSV),
//!   pseudonymiser, the ledger of what was published, and the publisher.
//! - [`rollup`]: the hub's consumer loop: decode → check → apply → dead-letter
//!   → persist in batches, with offsets in the same transaction as the state.
//! - [`store`]: the narrow store trait and its SQLite implementation.
//! - [`report`]: totals → table / JSON / CSV.
//! - [`kafka`]: shared rdkafka client settings, topic creation and lag.
//! - [`loadgen`]: a deterministic synthetic event stream for benchmarks and
//!   crash tests (pure).
//! - [`config`]: the `Settings` trees of the hub and the agent, loaded and
//!   validated once at start-up.
//! - [`cli`], [`telemetry`]: command line and logging; `main.rs` only wires.

pub mod agent;
pub mod cli;
pub mod codec;
pub mod config;
pub mod domain;
pub mod kafka;
pub mod loadgen;
pub mod report;
pub mod rollup;
pub mod store;
pub mod telemetry;
