//! The pure domain: events, validity, the hub's operations, the partitioner,
//! the counting engine and totals. Nothing here does I/O or knows Kafka, SQL
//! or Avro.

pub mod engine;
pub mod event;
pub mod operations;
pub mod partition;
pub mod reason;
pub mod totals;

#[cfg(test)]
mod engine_tests;

pub use engine::{Applied, Engine, OperationTotals, Refused, ReportId};
pub use event::{
    ArrestOffence, ChargeCount, ChargeOffence, ClosureType, Invalid, Kind, Millis, Outcome, OutcomeEvent, Referral,
    SeizureItem,
};
pub use operations::{Operation, Operations, UnknownOperation};
pub use partition::partition_for;
pub use reason::{advice_for, Reason};
pub use totals::Totals;

/// RFC 3339 (UTC, milliseconds) for messages; the raw number if out of range.
pub fn fmt_millis(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| format!("{ms} ms"))
}
