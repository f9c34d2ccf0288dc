//! Turning accepted export rows into revisions: pseudonymise, compare with the
//! ledger, and decide what to publish. No Kafka here.

use std::collections::HashMap;

use super::export::{ExportRow, RowError};
use super::ledger::{Entry, Ledger, LedgerError};
use super::pseudonym::Pseudonymiser;
use crate::codec::{binary, Registry};
use crate::config::AgentSettings;
use crate::domain::{Millis, Outcome, OutcomeEvent};

/// What one export file gives, before anything is sent.
#[derive(Debug, Default)]
pub struct Plan {
    pub entries: Vec<Entry>,
    /// `(key, value)` in publication order.
    pub messages: Vec<(String, Vec<u8>)>,
    pub published: u64,
    pub withdrawn: u64,
    pub unchanged: u64,
    pub rejected: Vec<RowError>,
}

/// Canonical bytes of what a revision says, leaving out what changes with
/// every revision (event id, revision number, reported_at).
/// The event is blanked in place and restored, rather than cloned: this runs once per row.
fn content(event: &mut OutcomeEvent) -> Vec<u8> {
    let kept = (std::mem::take(&mut event.event_id), event.revision, event.reported_at);
    (event.revision, event.reported_at) = (0, 0);
    let mut out = Vec::with_capacity(128);
    binary::encode(event, &mut out);
    (event.event_id, event.revision, event.reported_at) = kept;
    out
}

/// Plans one file. `now` stamps `reported_at` on every new revision.
pub fn plan(
    settings: &AgentSettings,
    ledger: &Ledger,
    file: &str,
    rows: Vec<ExportRow>,
    mut rejected: Vec<RowError>,
    now: Millis,
) -> Result<Plan, LedgerError> {
    let registry = Registry::builtin();
    let mut plan = Plan::default();
    // Keyed once per operation, not per row.
    let keys: HashMap<&str, Result<Pseudonymiser, String>> = (settings.operations.values())
        .filter_map(|o| Some((o.id.as_str(), Pseudonymiser::new(o.secret.as_ref()?.expose().as_bytes()))))
        .collect();
    // A record may appear twice in one file: identical is harmless, differing
    // means the export itself is inconsistent, so the later row is refused.
    let mut seen: HashMap<String, (u64, Vec<u8>)> = HashMap::new();
    for row in rows {
        let reject = |reason: String| RowError { file: file.to_string(), line: row.line, reason };
        let Some(keyed) = keys.get(row.operation.as_str()) else {
            rejected.push(reject(format!(
                "operation {:?} is not configured for this agent (add it with its secret to the agent config)",
                row.operation
            )));
            continue;
        };
        let mut outcome = row.outcome.clone();
        if let Outcome::Charge { charges } = &mut outcome {
            // One order for one meaning: a reordered cell is not a revision.
            charges.sort_by_key(|c| c.offence);
        }
        let joint_ref = match &row.joint_ref {
            None => None,
            Some(raw) => match keyed.as_ref().map_err(Clone::clone).and_then(|k| k.pseudonym(outcome.kind(), raw)) {
                Ok(r) => Some(r),
                Err(e) => {
                    rejected.push(reject(format!("joint_ref: {e}")));
                    continue;
                }
            },
        };
        let mut event = OutcomeEvent {
            event_id: row.record_id.clone(),
            revision: 1,
            force: settings.force.clone(),
            operation: row.operation.clone(),
            occurred_at: row.occurred_at,
            reported_at: now,
            withdrawn: row.withdrawn,
            joint_ref,
            outcome,
        };
        let body = content(&mut event);
        if let Some((first, earlier)) = seen.get(&row.record_id) {
            if *earlier == body {
                plan.unchanged += 1;
            } else {
                rejected.push(reject(format!("record_id {:?} differs from its row at line {first}", row.record_id)));
            }
            continue;
        }
        seen.insert(row.record_id.clone(), (row.line, body.clone()));

        // `seen` guarantees one plan entry per record, so the ledger is current.
        let previous = ledger.get(&row.record_id)?;
        let identity = event.identity_key();
        match previous {
            Some(prev) if prev.content == body => plan.unchanged += 1,
            Some(prev) if prev.identity == identity => {
                event.event_id = prev.event_id.clone();
                event.revision = prev.revision + 1;
                push(&mut plan, registry, &row.record_id, prev.generation, &event, body);
            }
            Some(prev) => {
                // Operation, kind or joint_ref changed: the contract has the
                // old report withdrawn and the outcome reported afresh.
                if !prev.withdrawn {
                    let mut old = registry.decode(&prev.value).map_err(|e| LedgerError::corrupt(&prev.record_id, e))?;
                    old.revision += 1;
                    old.withdrawn = true;
                    old.reported_at = now;
                    let value = registry.encode(&old);
                    plan.messages.push((prev.identity.clone(), value));
                    plan.published += 1;
                    plan.withdrawn += 1;
                }
                let generation = prev.generation + 1;
                event.event_id = format!("{}:{generation}", row.record_id);
                if event.event_id.len() > 128 {
                    rejected.push(reject(format!(
                        "record_id {:?} is too long to be re-reported under a new event id",
                        row.record_id
                    )));
                    continue;
                }
                push(&mut plan, registry, &row.record_id, generation, &event, body);
            }
            None => push(&mut plan, registry, &row.record_id, 1, &event, body),
        }
    }
    plan.rejected = rejected;
    Ok(plan)
}

fn push(plan: &mut Plan, registry: &Registry, record_id: &str, generation: i64, event: &OutcomeEvent, body: Vec<u8>) {
    let value = registry.encode(event);
    let key = event.identity_key();
    plan.entries.push(Entry {
        record_id: record_id.to_string(),
        event_id: event.event_id.clone(),
        generation,
        revision: event.revision,
        identity: key.clone(),
        content: body,
        withdrawn: event.withdrawn,
        value: value.clone(),
    });
    plan.messages.push((key, value));
    plan.published += 1;
    plan.withdrawn += u64::from(event.withdrawn);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AgentKafka, AgentOperation, Secret};
    use crate::domain::ArrestOffence;

    fn settings(dir: &std::path::Path) -> AgentSettings {
        AgentSettings {
            force: "MPS".into(),
            state_dir: dir.to_path_buf(),
            kafka: AgentKafka {
                bootstrap: String::new(),
                topic: String::new(),
                give_up_after_s: 1,
                librdkafka: Default::default(),
            },
            operations: [("op".to_string(), AgentOperation { id: "OP".into(), secret: Some(Secret::new("s")) })].into(),
            spool_limit: crate::config::default_spool_limit(),
            exports: Default::default(),
        }
    }

    fn row(line: u64, id: &str, joint: Option<&str>, group: ArrestOffence, withdrawn: bool) -> ExportRow {
        ExportRow {
            line,
            record_id: id.into(),
            operation: "OP".into(),
            occurred_at: 1_696_900_000_000,
            joint_ref: joint.map(str::to_string),
            withdrawn,
            outcome: Outcome::Arrest { offence_group: group },
        }
    }

    /// Plans `rows` and records the plan, as a publish run would.
    fn run(s: &AgentSettings, ledger: &mut Ledger, rows: Vec<ExportRow>, now: Millis) -> (Plan, Vec<OutcomeEvent>) {
        let p = plan(s, ledger, "f.csv", rows, vec![], now).unwrap();
        ledger.record(&p.entries, &p.messages).unwrap();
        let seqs: Vec<i64> = ledger.pending().unwrap().iter().map(|m| m.seq).collect();
        ledger.acknowledge(&seqs).unwrap();
        let events = p.messages.iter().map(|(_, v)| Registry::builtin().decode(v).unwrap()).collect();
        (p, events)
    }

    #[test]
    fn unchanged_rows_publish_nothing_and_changed_rows_the_next_revision() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Other, false)], 1000);
        assert_eq!((p.published, ev[0].revision, ev[0].reported_at), (1, 1, 1000));
        let (p, _) = run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Other, false)], 2000);
        assert_eq!((p.published, p.unchanged), (0, 1));
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Weapons, false)], 3000);
        assert_eq!((p.published, ev[0].revision, ev[0].event_id.as_str()), (1, 2, "a"));
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Weapons, true)], 4000);
        assert_eq!((p.published, p.withdrawn, ev[0].revision, ev[0].withdrawn), (1, 1, 3, true));
    }

    #[test]
    fn an_identity_change_withdraws_the_old_report_and_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut ledger = Ledger::open(dir.path()).unwrap();
        run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Other, false)], 1000);
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", Some("JA 1"), ArrestOffence::Other, false)], 2000);
        assert_eq!((p.published, p.withdrawn), (2, 1));
        assert_eq!((ev[0].event_id.as_str(), ev[0].revision, ev[0].withdrawn), ("a", 2, true));
        assert_eq!((ev[1].event_id.as_str(), ev[1].revision, ev[1].withdrawn), ("a:2", 1, false));
        assert_eq!(p.messages[0].0, "OP/MPS/a", "the withdrawal goes under the old key");
        assert!(p.messages[1].0.starts_with("OP/arrest/"), "{}", p.messages[1].0);
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", Some("JA 1"), ArrestOffence::Weapons, false)], 3000);
        assert_eq!((p.published, ev[0].event_id.as_str(), ev[0].revision), (1, "a:2", 2));
    }

    #[test]
    fn repeated_rows_in_one_file_and_unknown_operations() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let mut other = row(5, "c", None, ArrestOffence::Other, false);
        other.operation = "ELSEWHERE".into();
        let rows = vec![
            row(2, "a", None, ArrestOffence::Other, false),
            row(3, "a", None, ArrestOffence::Other, false),
            row(4, "a", None, ArrestOffence::Weapons, false),
            other,
        ];
        let (p, _) = run(&s, &mut ledger, rows, 1000);
        assert_eq!((p.published, p.unchanged), (1, 1));
        let lines: Vec<u64> = p.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [4, 5]);
        assert!(p.rejected[0].reason.contains("line 2"), "{}", p.rejected[0].reason);
        assert!(p.rejected[1].reason.contains("not configured"), "{}", p.rejected[1].reason);
    }
}
