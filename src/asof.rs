//! As-of figures: the totals of every revision that had reached the topic at
//! a given moment, recomputed by the engine from the store's history; and
//! the difference between two moments ("what changed since the figures were
//! published"). Kafka timestamps define the moment, so a rebuilt store gives
//! the same as-of figures.

use std::collections::BTreeMap;

use crate::codec::Registry;
use crate::domain::{Millis, OperationTotals, Operations, Totals};
use crate::store::TotalsReader;

pub fn totals_as_of(
    reader: &dyn TotalsReader,
    operations: &Operations,
    operation: &str,
    at: Millis,
) -> anyhow::Result<OperationTotals> {
    let registry = Registry::builtin();
    let mut engine = operations.engine();
    for value in reader.history_until(operation, at)? {
        let event = registry.decode(&value).map_err(|e| anyhow::anyhow!("stored history cannot be read: {e}"))?;
        // Every row was applied once already; a subset of them applies again.
        engine.apply(event).map_err(|e| anyhow::anyhow!("stored history is inconsistent: {e}"))?;
    }
    Ok(engine.totals(operation).cloned().unwrap_or_default())
}

fn diff_rows<K: Ord + Clone>(from: &BTreeMap<K, Totals>, to: &BTreeMap<K, Totals>) -> BTreeMap<K, Totals> {
    let mut out = BTreeMap::new();
    for key in from.keys().chain(to.keys()) {
        let mut d = to.get(key).copied().unwrap_or_default();
        d.add_scaled(&from.get(key).copied().unwrap_or_default(), -1);
        if !d.is_zero() {
            out.insert(key.clone(), d);
        }
    }
    out
}

/// `to − from`, figure by figure; rows that did not change are left out.
pub fn diff(from: &OperationTotals, to: &OperationTotals) -> OperationTotals {
    let minus = |a: &Totals, b: &Totals| {
        let mut d = *b;
        d.add_scaled(a, -1);
        d
    };
    OperationTotals {
        joint: minus(&from.joint, &to.joint),
        forces: diff_rows(&from.forces, &to.forces),
        joint_credit: diff_rows(&from.joint_credit, &to.joint_credit),
        days: diff_rows(&from.days, &to.days),
        provisional: minus(&from.provisional, &to.provisional),
        provisional_forces: diff_rows(&from.provisional_forces, &to.provisional_forces),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_is_to_minus_from_and_drops_unchanged_rows() {
        let mut a = OperationTotals::default();
        a.joint.arrests = 10;
        a.forces.insert("MPS".into(), Totals { arrests: 7, ..Totals::default() });
        a.forces.insert("KENT".into(), Totals { arrests: 3, ..Totals::default() });
        let mut b = a.clone();
        b.joint.arrests = 9;
        b.forces.get_mut("KENT").unwrap().arrests = 2;
        b.forces.insert("TVP".into(), Totals { cash_pence: 5, ..Totals::default() });
        let d = diff(&a, &b);
        assert_eq!(d.joint.arrests, -1);
        assert_eq!(d.forces.keys().collect::<Vec<_>>(), ["KENT", "TVP"]);
        assert_eq!((d.forces["KENT"].arrests, d.forces["TVP"].cash_pence), (-1, 5));
    }
}
