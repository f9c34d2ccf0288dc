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

/// An operation code that is not configured.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("operation {id:?} is not known; known operations: {}{}", list(known), hint(suggestion))]
pub struct UnknownOperation {
    pub id: String,
    pub known: Vec<String>,
    /// A known code equal to `id` but for case, or a letter or two away.
    pub suggestion: Option<String>,
}

fn list(known: &[String]) -> String {
    if known.is_empty() {
        "none".into()
    } else {
        known.join(", ")
    }
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion.as_ref().map_or(String::new(), |s| format!(" (did you mean {s}?)"))
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
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

    /// The error for an operation code these operations do not hold: the
    /// known codes, and the one it most likely meant.
    pub fn unknown(&self, id: &str) -> UnknownOperation {
        let mut known: Vec<String> = self.by_id.keys().cloned().collect();
        known.sort();
        let folded = id.to_lowercase();
        let distance = |k: &String| edit_distance(&k.to_lowercase(), &folded);
        let suggestion = known.iter().min_by_key(|k| distance(k)).filter(|k| distance(k) <= 2).cloned();
        UnknownOperation { id: id.to_string(), known, suggestion }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(ids: &[&str]) -> Operations {
        Operations::new(ids.iter().map(|id| Operation {
            id: id.to_string(),
            name: String::new(),
            starts: 0,
            ends: 1,
            forces: None,
            utc_offset_ms: 0,
        }))
    }

    #[test]
    fn an_unknown_operation_names_the_known_ones_and_the_nearest() {
        let o = ops(&["CLIW-2023-11", "CLIW-2023-10"]);
        let e = o.unknown("cliw-2023-10");
        assert_eq!(e.suggestion.as_deref(), Some("CLIW-2023-10"));
        assert_eq!(
            e.to_string(),
            "operation \"cliw-2023-10\" is not known; known operations: CLIW-2023-10, CLIW-2023-11 \
             (did you mean CLIW-2023-10?)"
        );
        assert_eq!(o.unknown("CLIW-2023-1").suggestion.as_deref(), Some("CLIW-2023-10"));
        let e = o.unknown("NOPE-1");
        assert_eq!((e.suggestion, e.known.len()), (None, 2));
        assert!(ops(&[]).unknown("X").to_string().ends_with("known operations: none"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
