//! The rollup's metrics (names and help in `telemetry::metrics`): what
//! each record did, the heartbeat and lag, and when each force was last
//! heard from — kept out of the consume loop's logic.

use std::collections::BTreeMap;

use metrics::{counter, gauge, Counter};

use super::record::Verdict;
use crate::config::HubSettings;
use crate::domain::{Applied, Operations, Reason};
use crate::store::{Activity, Heartbeat, SqliteStore, TotalsReader};
use crate::telemetry::metrics::seconds;

/// At start: the partitions, and each force's last event from the store,
/// so that a force silent since before a restart still shows as silent.
pub fn start(settings: &HubSettings, partitions: usize, operations: &Operations) {
    crate::telemetry::metrics::handle();
    // At zero from the start, like the per-record counters ([`Meters`]):
    // `increase()` then sees the first error.
    counter!("jointops_rollup_store_errors_total").increment(0);
    gauge!("jointops_rollup_partitions_owned").set(partitions as f64);
    gauge!("jointops_rollup_topic_partitions").set(partitions as f64);
    let Ok(store) = SqliteStore::open_read(&settings.store.path) else { return };
    for op in operations.iter() {
        activity(&store.activity(&op.id).unwrap_or_default());
    }
}

const RESULTS: [(Applied, &str); 4] = [
    (Applied::New, "new"),
    (Applied::Revised, "revised"),
    (Applied::Duplicate, "duplicate"),
    (Applied::Stale, "stale"),
];

/// The per-record counters, registered once: counting a record is then an
/// atomic add, not a registry lookup by name and labels. Every series is
/// there at zero from the start, so `increase()` sees the first dead letter
/// and a dashboard shows 0 rather than "no data".
pub struct Meters {
    consumed: Counter,
    events: [Counter; RESULTS.len()],
    dead: [Counter; Reason::ALL.len()],
}

impl Meters {
    pub fn new() -> Meters {
        crate::telemetry::metrics::handle();
        let consumed = counter!("jointops_rollup_records_consumed_total");
        let events = RESULTS.map(|(_, result)| counter!("jointops_rollup_events_total", "result" => result));
        let dead = Reason::ALL.map(|r| counter!("jointops_rollup_dead_letters_total", "reason" => r.code()));
        for c in events.iter().chain(&dead).chain([&consumed]) {
            c.increment(0);
        }
        Meters { consumed, events, dead }
    }

    pub fn verdict(&self, v: &Verdict) {
        self.consumed.increment(1);
        let counter = match v {
            Verdict::Counted { applied, .. } => {
                &self.events[RESULTS.iter().position(|(a, _)| a == applied).expect("every result has a counter")]
            }
            Verdict::Dead(d) => {
                &self.dead[Reason::ALL.iter().position(|r| *r == d.reason).expect("every reason has a counter")]
            }
        };
        counter.increment(1);
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
