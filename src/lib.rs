//! jointops: police forces share the outcomes of joint operations.
//!
//! Module map (what lives where, and what does not):
//!
//! - [`access`]: roles and what each may see; token generation and hashing.
//!   Pure: tokens and the access log live in the store.
//! - [`domain`]: pure. Events, validity, the hub's operations (R6), the
//!   partitioner (§3), the counting engine (R1–R5) and totals. No I/O, no
//!   Kafka, SQL or Avro.
//! - [`codec`]: Avro single-object encoding of events: the schema versions in
//!   `schemas/`, fingerprints, a fast codec for the current version and
//!   schema resolution for older ones. No Kafka.
//! - [`agent`]: a force's producer agent: export readers (JSON Lines, JSON
//!   arrays, CSV), pseudonymiser, the ledger (records in buckets) and fsync'd
//!   outbox (messages in batches), planning (`agent::plan`; a large file a
//!   part at a time on its own thread while the parts before it are recorded
//!   and sent, `agent::pipeline`), the check of each operation's secret
//!   against the ledger's fingerprint, signing and delivery, and `watch` (the
//!   agent as a service on an inbox folder).
//! - [`rollup`]: the hub's consumer loop: the record step (`rollup::record`:
//!   partition and signature → decode → check → apply, on a plain record
//!   with no Kafka types) → the pending batch (`rollup::batch`) → dead
//!   letters sent → persisted in one store transaction with the offsets;
//!   rebuilds, and dead-letter replay.
//! - [`store`]: narrow traits (state, readers, dead-letter log, tokens and
//!   access log) and their SQLite implementation; the hub's own records
//!   (tokens, the chained access log) in a file of their own that no
//!   rebuild replaces.
//! - [`api`]: `jointops serve`, the HTTP API and dashboard (axum routes on
//!   hyper's HTTP/1 server, optionally TLS): bearer tokens, per-role
//!   filtering, the access-log middleware, limits against hostile clients.
//!   Reads the store; writes only the access log.
//! - [`report`]: totals → table / JSON / CSV.
//! - [`audit`]: the access log and token list for people and tools, with
//!   stored text shown safely (escaped controls, inert CSV formulas).
//! - [`asof`]: totals as they stood at a moment, and the difference between
//!   two moments, recomputed from the store's history by the engine.
//! - [`kafka`]: shared rdkafka client settings, topic creation and lag.
//! - [`trust`]: who may speak for a force (§7): the signed bytes, signing,
//!   the hub's keyring and its checks, private key files. No Kafka.
//! - [`loadgen`]: a deterministic synthetic event stream for benchmarks and
//!   crash tests (pure).
//! - [`config`]: the `Settings` trees of the hub and the agent, loaded and
//!   validated once at start-up, with the librdkafka properties file that
//!   `kafka.properties` names folded in.
//! - [`private`]: files and folders only their owner may read (stores,
//!   ledgers); used by the store and agent shells.
//! - [`cli`], [`telemetry`]: command line and logging; `main.rs` only wires.

pub mod access;
pub mod agent;
pub mod api;
pub mod asof;
pub mod audit;
pub mod cli;
pub mod codec;
pub mod config;
pub mod domain;
pub mod kafka;
pub mod loadgen;
pub mod private;
pub mod report;
pub mod rollup;
pub mod store;
pub mod telemetry;
pub mod trust;
