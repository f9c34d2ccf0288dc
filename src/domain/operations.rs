//! What the hub knows of each operation (rule R6): its window and, optionally,
//! the forces taking part.

use std::collections::{BTreeSet, HashMap};

use super::event::{Millis, OutcomeEvent};
use super::reason::Reason;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub id: String,
    pub name: String,
    /// Inclusive start of the window.
    pub starts: Millis,
    /// Exclusive end of the window.
    pub ends: Millis,
    /// `None`: any force may report.
    pub forces: Option<BTreeSet<String>>,
    /// The offset of `starts` as written (e.g. +01:00): per-day totals are
    /// days in this offset.
    pub utc_offset_ms: i64,
}

/// The hub's operations, checked against every valid event before counting.
#[derive(Clone, Debug, Default)]
pub struct Operations {
    by_id: HashMap<String, Operation>,
}

impl Operations {
    pub fn new(operations: impl IntoIterator<Item = Operation>) -> Self {
        Operations { by_id: operations.into_iter().map(|o| (o.id.clone(), o)).collect() }
    }

    pub fn get(&self, id: &str) -> Option<&Operation> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Operation> {
        self.by_id.values()
    }

    /// An engine that counts per-day totals in each operation's offset.
    pub fn engine(&self) -> super::Engine {
        let mut engine = super::Engine::new();
        for op in self.by_id.values() {
            engine.set_day_offset(&op.id, op.utc_offset_ms);
        }
        engine
    }

    /// R6: `Err` with the reason code and a detail naming the values.
    pub fn check(&self, event: &OutcomeEvent) -> Result<(), (Reason, String)> {
        let Some(op) = self.by_id.get(&event.operation) else {
            return Err((
                Reason::UnknownOperation,
                format!("operation {:?} is not known to this hub", event.operation),
            ));
        };
        if let Some(forces) = &op.forces {
            if !forces.contains(&event.force) {
                return Err((
                    Reason::ForceNotInOperation,
                    format!("force {} is not taking part in {}", event.force, op.id),
                ));
            }
        }
        if !(op.starts..op.ends).contains(&event.occurred_at) {
            return Err((
                Reason::OutsideWindow,
                format!(
                    "occurred_at {} is outside {}'s window [{}, {})",
                    crate::domain::fmt_millis(event.occurred_at),
                    op.id,
                    crate::domain::fmt_millis(op.starts),
                    crate::domain::fmt_millis(op.ends)
                ),
            ));
        }
        Ok(())
    }
}
