//! The rollup's metrics (names and help in `telemetry::metrics`): what
//! each record did, the heartbeat and lag, and when each force was last
//! heard from — kept out of the consume loop's logic.

use std::collections::BTreeMap;

use metrics::{counter, gauge};

use super::record::Verdict;
use crate::config::HubSettings;
use crate::domain::{Applied, Operations};
use crate::store::{Activity, Heartbeat, SqliteStore, TotalsReader};
use crate::telemetry::metrics::seconds;

/// At start: the partitions, and each force's last event from the store,
/// so that a force silent since before a restart still shows as silent.
pub fn start(settings: &HubSettings, partitions: usize, operations: &Operations) {
    crate::telemetry::metrics::handle();
    // Every series at zero from the start: `increase()` then sees the first
    // error or dead letter, and a dashboard shows 0 rather than "no data".
    counter!("jointops_rollup_store_errors_total").increment(0);
    counter!("jointops_rollup_records_consumed_total").increment(0);
    for reason in crate::domain::Reason::ALL {
        counter!("jointops_rollup_dead_letters_total", "reason" => reason.code()).increment(0);
    }
    for result in ["new", "revised", "duplicate", "stale"] {
        counter!("jointops_rollup_events_total", "result" => result).increment(0);
    }
    gauge!("jointops_rollup_partitions_owned").set(partitions as f64);
    gauge!("jointops_rollup_topic_partitions").set(partitions as f64);
    let Ok(store) = SqliteStore::open_read(&settings.store.path) else { return };
    for op in operations.iter() {
        activity(&store.activity(&op.id).unwrap_or_default());
    }
}

pub fn verdict(v: &Verdict) {
    counter!("jointops_rollup_records_consumed_total").increment(1);
    match v {
        Verdict::Counted { applied, .. } => {
            let result = match applied {
                Applied::New => "new",
                Applied::Revised => "revised",
                Applied::Duplicate => "duplicate",
                Applied::Stale => "stale",
            };
            counter!("jointops_rollup_events_total", "result" => result).increment(1);
        }
        Verdict::Dead(d) => {
            counter!("jointops_rollup_dead_letters_total", "reason" => d.reason.code()).increment(1);
        }
    }
}

/// The newest counted event per operation and force (a gauge only rises:
/// the store keeps the maximum).
pub fn activity(rows: &[Activity]) {
    for a in rows.iter().filter(|a| a.last_at > 0) {
        let labels = [("operation", a.operation.clone()), ("force", a.force.clone())];
        gauge!("jointops_rollup_last_event_timestamp_seconds", &labels).set(seconds(a.last_at));
    }
}

pub fn beat(beat: &Heartbeat, lags: Option<&BTreeMap<i32, i64>>, operations: &Operations) {
    gauge!("jointops_rollup_heartbeat_timestamp_seconds").set(seconds(beat.at));
    for (p, lag) in lags.into_iter().flatten() {
        gauge!("jointops_rollup_consumer_lag", "partition" => p.to_string()).set(*lag as f64);
    }
    for op in operations.iter() {
        let open = op.starts <= beat.at && beat.at < op.ends;
        gauge!("jointops_operation_window_open", "operation" => op.id.clone()).set(if open { 1.0 } else { 0.0 });
    }
}
