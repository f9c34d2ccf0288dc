//! A batch in the making: what the record step's verdicts add up to until
//! the consume loop commits them, and the store [`Batch`] built from it.
//! Plain data and functions, so a batch is tested without a broker.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::record::{Change, Dead, Record, Verdict};
use crate::domain::{Applied, Engine};
use crate::store::{Activity, Batch, DeadLetter, HistoryRow, Original, ReportRow};

/// What the current batch holds until it is committed.
#[derive(Debug, Default)]
pub struct Pending {
    records: usize,
    /// Every change, in order: a report changed twice in one batch is here
    /// twice, and only its last state is written.
    reports: Vec<ReportRow>,
    /// Every revision applied, in order.
    history: Vec<HistoryRow>,
    dead: Vec<DeadLetter>,
    /// Each partition's next offset to read.
    offsets: BTreeMap<i32, i64>,
    /// Per (operation, force): new reports, newest Kafka time counted.
    activity: BTreeMap<(String, String), (i64, i64)>,
}

impl Pending {
    /// Records taken in, whatever became of them.
    pub fn len(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Adds what the step made of `r`. `at` is when the record reached the
    /// topic (its timestamp, or when it was received if the broker did not
    /// say): as-of figures and a force's last counted event then read the
    /// same after a rebuild.
    pub fn push(&mut self, r: &Record<'_>, verdict: Verdict, at: i64) {
        match verdict {
            Verdict::Counted { applied, change: Some(change) } => self.changed(applied, change, at),
            Verdict::Counted { change: None, .. } => {}
            Verdict::Dead(dead) => self.dead.push(dead_letter(r, dead)),
        }
        self.offsets.insert(r.partition, r.offset + 1);
        self.records += 1;
    }

    fn changed(&mut self, applied: Applied, change: Change, at: i64) {
        let Change { event, identity, value } = change;
        let act = self.activity.entry((event.operation.clone(), event.force.clone())).or_default();
        act.0 += i64::from(applied == Applied::New);
        act.1 = act.1.max(at);
        self.history.push(HistoryRow {
            force: event.force.clone(),
            event_id: event.event_id.clone(),
            revision: event.revision,
            operation: event.operation.clone(),
            at,
            value: value.clone(),
        });
        self.reports.push(ReportRow { event, identity, value });
    }

    /// The store batch: each changed report's last state, every revision,
    /// the totals of every operation touched as `engine` has them now, dead
    /// letters (not yet sent), activity and offsets. `committed_at` is left
    /// for the committer to stamp.
    pub fn into_batch(self, topic: &str, engine: &Engine) -> Batch {
        let operations: BTreeSet<&str> = self.history.iter().map(|h| h.operation.as_str()).collect();
        let totals =
            operations.into_iter().map(|op| (op.to_string(), engine.totals(op).cloned().unwrap_or_default())).collect();
        Batch {
            reports: last_states(self.reports),
            history: self.history,
            totals,
            dead_letters: self.dead,
            offsets: self.offsets.into_iter().map(|(part, next)| (topic.to_string(), part, next)).collect(),
            activity: self
                .activity
                .into_iter()
                .map(|((operation, force), (events, last_at))| Activity { operation, force, events, last_at })
                .collect(),
            committed_at: 0,
        }
    }
}

/// Each report once, in the order of its last change.
fn last_states(rows: Vec<ReportRow>) -> Vec<ReportRow> {
    let mut last: HashMap<(&str, &str), usize> = HashMap::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        last.insert((&r.event.force, &r.event.event_id), i);
    }
    let mut keep = vec![false; rows.len()];
    for i in last.into_values() {
        keep[i] = true;
    }
    rows.into_iter().zip(keep).filter_map(|(r, k)| k.then_some(r)).collect()
}

fn dead_letter(r: &Record<'_>, d: Dead) -> DeadLetter {
    let Dead { reason, detail, force, event_id, operation } = d;
    DeadLetter {
        topic: r.topic.to_string(),
        partition: r.partition,
        offset: r.offset,
        reason: reason.code().to_string(),
        detail,
        force,
        event_id,
        operation,
        at: r.timestamp_ms,
        original: original_of(r),
        sent: false,
        replayed: false,
    }
}

/// The record as the dead-letter log keeps it: key, value and headers.
fn original_of(r: &Record<'_>) -> Original {
    Original {
        key: r.key.map(<[u8]>::to_vec),
        value: r.value.map(<[u8]>::to_vec),
        headers: r.headers.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Registry;
    use crate::domain::{partition_for, ArrestOffence, Operation, Operations, Outcome, OutcomeEvent, Reason};
    use crate::rollup::record::{record, step, Checks};
    use crate::trust::Keyring;

    const T: i64 = 1_696_900_000_000;

    fn ops() -> Operations {
        let op = |id: &str| Operation {
            id: id.into(),
            name: String::new(),
            starts: T - 1000,
            ends: T + 1000,
            forces: None,
            utc_offset_ms: 0,
        };
        Operations::new([op("OP"), op("OQ")])
    }

    fn ev(force: &str, id: &str, revision: i32, operation: &str) -> OutcomeEvent {
        OutcomeEvent {
            event_id: id.into(),
            revision,
            force: force.into(),
            operation: operation.into(),
            occurred_at: T,
            reported_at: T + i64::from(revision),
            withdrawn: false,
            joint_ref: None,
            outcome: Outcome::Arrest { offence_group: ArrestOffence::Other },
        }
    }

    /// Steps each `(event or junk, key, offset)`, on its key's partition of
    /// three, through a fresh engine into one pending batch, the record's
    /// timestamp being `T + offset`.
    fn batch_of(records: &[(Option<&OutcomeEvent>, &[u8], i64)]) -> (Pending, Engine) {
        let ring = Keyring::default();
        let ops = ops();
        let c = Checks { registry: Registry::builtin(), operations: &ops, keyring: &ring };
        let mut engine = Engine::new();
        let mut pending = Pending::default();
        for &(event, key, offset) in records {
            let value = event.map_or_else(|| b"junk".to_vec(), |e| Registry::builtin().encode(e));
            let headers = [("x-trace", Some(&b"t"[..]))];
            let r = Record {
                key: Some(key),
                value: Some(&value),
                headers: &headers,
                partition: partition_for(key, 3),
                partitions: 3,
                offset,
                timestamp_ms: Some(T + offset),
                ..record()
            };
            let verdict = step(c, &mut engine, &r);
            pending.push(&r, verdict, T + offset);
        }
        (pending, engine)
    }

    #[test]
    fn a_new_report_a_revision_a_duplicate_and_a_dead_letter_make_the_expected_batch() {
        let a1 = ev("MPS", "a", 1, "OP");
        let a2 = ev("MPS", "a", 2, "OP");
        let b1 = ev("KENT", "b", 1, "OQ");
        let (ka, kb) = (a1.identity_key(), b1.identity_key());
        let (pending, engine) = batch_of(&[
            (Some(&a1), ka.as_bytes(), 10),
            (Some(&b1), kb.as_bytes(), 11),
            (Some(&a2), ka.as_bytes(), 12),
            (Some(&a2), ka.as_bytes(), 13),
            (None, b"some/key", 14),
        ]);
        assert_eq!(pending.len(), 5, "every record counts towards the batch size");
        let batch = pending.into_batch("in", &engine);

        let reports: Vec<_> = batch.reports.iter().map(|r| (&r.event, r.identity.as_str())).collect();
        assert_eq!(reports, [(&b1, kb.as_str()), (&a2, ka.as_str())], "each report once, at its last state");
        assert_eq!(Registry::builtin().decode(&batch.reports[1].value).unwrap(), a2);
        let history: Vec<_> = batch.history.iter().map(|h| (h.event_id.as_str(), h.revision, h.at)).collect();
        assert_eq!(history, [("a", 1, T + 10), ("b", 1, T + 11), ("a", 2, T + 12)], "the duplicate adds no history");
        let ops: Vec<_> = batch.totals.iter().map(|(op, t)| (op.as_str(), t.joint.arrests)).collect();
        assert_eq!(ops, [("OP", 1), ("OQ", 1)], "the totals of every operation touched");

        let [d] = &batch.dead_letters[..] else { panic!("{:?}", batch.dead_letters) };
        let home = partition_for(b"some/key", 3);
        assert_eq!((d.topic.as_str(), d.partition, d.offset, d.at), ("in", home, 14, Some(T + 14)));
        assert_eq!(d.reason, Reason::Undecodable.code());
        assert!(!d.sent && !d.replayed, "sending is the committer's");
        assert_eq!(d.original.key.as_deref(), Some(&b"some/key"[..]));
        assert_eq!(d.original.value.as_deref(), Some(&b"junk"[..]));
        assert_eq!(d.original.headers, [("x-trace".to_string(), Some(b"t".to_vec()))]);

        let activity: Vec<_> =
            batch.activity.iter().map(|a| (a.operation.as_str(), a.force.as_str(), a.events, a.last_at)).collect();
        assert_eq!(activity, [("OP", "MPS", 1, T + 12), ("OQ", "KENT", 1, T + 11)], "a revision is not a new report");
        // In record order, so that a later record on a shared partition wins.
        let mut next = BTreeMap::new();
        for (key, offset) in [(kb.as_bytes(), 11), (ka.as_bytes(), 13), (&b"some/key"[..], 14)] {
            next.insert(partition_for(key, 3), offset + 1);
        }
        let want: Vec<_> = next.into_iter().map(|(p, n)| ("in".to_string(), p, n)).collect();
        assert_eq!(batch.offsets, want, "each partition's next offset");
    }

    #[test]
    fn offsets_are_each_partitions_next_and_a_refused_revision_changes_no_report() {
        let a = ev("MPS", "a", 1, "OP");
        let mut conflict = a.clone();
        conflict.withdrawn = true;
        let key = a.identity_key();
        let home = partition_for(key.as_bytes(), 3);
        let other = ["k0", "k1", "k2", "k3"].into_iter().find(|k| partition_for(k.as_bytes(), 3) != home).unwrap();
        let (pending, engine) = batch_of(&[
            (Some(&a), key.as_bytes(), 7),
            (None, other.as_bytes(), 3),
            (Some(&conflict), key.as_bytes(), 8),
        ]);
        let batch = pending.into_batch("in", &engine);
        let mut want = vec![("in".to_string(), home, 9), ("in".to_string(), partition_for(other.as_bytes(), 3), 4)];
        want.sort_by_key(|(_, p, _)| *p);
        assert_eq!(batch.offsets, want);
        assert_eq!(batch.reports.len(), 1);
        let [junk, d] = &batch.dead_letters[..] else { panic!("{:?}", batch.dead_letters) };
        assert_eq!((junk.reason.as_str(), junk.offset), ("undecodable", 3));
        assert_eq!(
            (d.reason.as_str(), d.force.as_deref(), d.operation.as_deref()),
            ("conflicting-revision", Some("MPS"), Some("OP"))
        );
    }

    #[test]
    fn an_empty_batch_writes_nothing_but_its_offsets() {
        let batch = Pending::default().into_batch("in", &Engine::new());
        assert!(batch.reports.is_empty() && batch.history.is_empty() && batch.totals.is_empty());
        assert!(batch.dead_letters.is_empty() && batch.offsets.is_empty() && batch.activity.is_empty());
    }
}
