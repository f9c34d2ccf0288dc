//! Turning accepted export rows into revisions: pseudonymise, compare with the
//! ledger, and decide what to publish. No Kafka here.
//!
//! Revisions follow the publication time (seconds since 2020-01-01), kept
//! strictly above the ledger's last one for the record: a fresh or lost
//! ledger then still publishes above whatever an earlier ledger did, where
//! counting from 1 again would collide with revisions the hub holds
//! (`conflicting-revision`). Only the order of revisions matters (R1).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::export::{ExportRow, RowError};
use super::ledger::{Entry, Ledger, LedgerError};
use super::pseudonym::{suspicious_line, Pseudonymiser};
use crate::codec::{binary, Registry};
use crate::config::{AgentOperation, AgentSettings};
use crate::domain::event::MAX_FUTURE_SKEW_MS;
use crate::domain::{fmt_millis, Kind, Millis, Outcome, OutcomeEvent};

/// 2020-01-01T00:00:00Z, in seconds: revisions count from here.
const REVISION_EPOCH_S: i64 = 1_577_836_800;

/// The revision of a record published at `now`: its second since 2020, and
/// always above `previous`, the ledger's last one (an int: good until 2088).
pub fn next_revision(previous: Option<i32>, now: Millis) -> i32 {
    let at = (now.div_euclid(1000) - REVISION_EPOCH_S).clamp(1, i64::from(i32::MAX)) as i32;
    previous.map_or(at, |p| at.max(p.saturating_add(1)))
}

/// Something a file's summary must say although nothing was refused.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Warning {
    /// The row's line, or none for the file as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub warning: String,
}

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
    pub warnings: Vec<Warning>,
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
    let mut looked_at: BTreeSet<String> = BTreeSet::new();
    for row in rows {
        let reject = |reason: String| RowError { file: file.to_string(), line: row.line, reason };
        if looked_at.insert(row.operation.clone()) {
            plan.warnings.extend(fresh_ledger(settings, ledger, &row.operation, now)?);
        }
        let (Some(op), Some(keyed)) = (settings.operation(&row.operation), keys.get(row.operation.as_str())) else {
            rejected.push(reject(format!(
                "operation {:?} is not configured for this agent (add it with its secret to the agent config)",
                row.operation
            )));
            continue;
        };
        if let Err(reason) = admissible(&settings.force, op, row.occurred_at, now) {
            rejected.push(reject(reason));
            continue;
        }
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
            revision: next_revision(None, now),
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
        if let (Kind::LineClosure, Some(raw)) = (event.kind(), &row.joint_ref) {
            plan.warnings.extend(suspicious_line(raw).map(|warning| Warning { line: Some(row.line), warning }));
        }

        // `seen` guarantees one plan entry per record, so the ledger is current.
        let previous = ledger.get(&row.record_id)?;
        let identity = event.identity_key();
        match previous {
            Some(prev) if prev.content == body => plan.unchanged += 1,
            Some(prev) if prev.identity == identity => {
                event.event_id = prev.event_id.clone();
                event.revision = next_revision(Some(prev.revision), now);
                push(&mut plan, registry, &row.record_id, prev.generation, &event, body);
            }
            Some(prev) => {
                // Operation, kind or joint_ref changed: the contract has the
                // old report withdrawn and the outcome reported afresh.
                if !prev.withdrawn {
                    let mut old = registry.decode(&prev.value).map_err(|e| LedgerError::corrupt(&prev.record_id, e))?;
                    old.revision = next_revision(Some(old.revision), now);
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

/// What the hub would certainly refuse (contract §2 and R6), refused here
/// with the row's line instead of dead-lettered there.
fn admissible(force: &str, op: &AgentOperation, occurred_at: Millis, now: Millis) -> Result<(), String> {
    if occurred_at > now.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(format!(
            "occurred_at {} is more than 24 h after now ({})",
            fmt_millis(occurred_at),
            fmt_millis(now)
        ));
    }
    let (starts, ends) = (op.starts.unwrap_or(Millis::MIN), op.ends.unwrap_or(Millis::MAX));
    if !(starts..ends).contains(&occurred_at) {
        let shown = |t: Option<Millis>| t.map_or("…".to_string(), fmt_millis);
        return Err(format!(
            "occurred_at {} is outside {}'s window [{}, {})",
            fmt_millis(occurred_at),
            op.id,
            shown(op.starts),
            shown(op.ends)
        ));
    }
    if op.forces.as_ref().is_some_and(|f| !f.contains(force)) {
        return Err(format!("force {force} is not taking part in {} (its forces in the agent config)", op.id));
    }
    Ok(())
}

/// A ledger that has published nothing for an operation that has started:
/// a force joining late, or a ledger lost or replaced. The agent cannot tell
/// which, and the second leaves reports on the hub that this ledger does not
/// know of, so it is said aloud.
fn fresh_ledger(
    settings: &AgentSettings,
    ledger: &Ledger,
    operation: &str,
    now: Millis,
) -> Result<Option<Warning>, LedgerError> {
    let Some(starts) = settings.operation(operation).and_then(|o| o.starts) else { return Ok(None) };
    if starts > now || ledger.knows_operation(operation)? {
        return Ok(None);
    }
    let state_dir = ledger.state_dir().display();
    warn!(%operation, %state_dir, starts = %fmt_millis(starts), "A ledger new to an operation that has started.");
    Ok(Some(Warning {
        line: None,
        warning: format!(
            "operation {operation} started at {}, and the ledger in {state_dir} has published nothing for it: \
             if this force published for it before (a lost or replaced ledger), these rows go out above the \
             revisions it published, but reports it published that these exports no longer hold are not \
             withdrawn: publish the operation's complete export",
            fmt_millis(starts)
        ),
    }))
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
                properties: None,
            },
            operations: [("op".to_string(), AgentOperation::new("OP", Secret::new("s")))].into(),
            spool_limit: crate::config::default_spool_limit(),
            accept_secret_change: Default::default(),
            watch: Default::default(),
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

    /// 2023-10-12T00:00:00Z: a publication time within the rows' reach.
    const T: Millis = 1_697_068_800_000;

    /// The revision of a first publication `k` seconds after `T`.
    fn rev(k: i64) -> i32 {
        next_revision(None, T + k * 1000)
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
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Other, false)], T + 1000);
        assert_eq!((p.published, ev[0].revision, ev[0].reported_at), (1, rev(1), T + 1000));
        let (p, _) = run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Other, false)], T + 2000);
        assert_eq!((p.published, p.unchanged), (0, 1));
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Weapons, false)], T + 3000);
        assert_eq!((p.published, ev[0].revision, ev[0].event_id.as_str()), (1, rev(3), "a"));
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Weapons, true)], T + 4000);
        assert_eq!((p.published, p.withdrawn, ev[0].revision, ev[0].withdrawn), (1, 1, rev(4), true));
    }

    #[test]
    fn revisions_follow_the_publication_second_and_stay_above_the_ledger() {
        let at = |rfc: &str| chrono::DateTime::parse_from_rfc3339(rfc).unwrap().timestamp_millis();
        assert_eq!(next_revision(None, at("2020-01-01T00:00:01.999Z")), 1);
        assert_eq!(next_revision(None, at("2020-01-01T00:00:00Z")), 1, "never below 1");
        assert_eq!(next_revision(None, at("2026-12-01T21:00:00Z")), 218_322_000);
        assert_eq!(next_revision(Some(218_322_000), at("2026-12-01T21:00:00Z")), 218_322_001, "same second");
        assert_eq!(next_revision(Some(7), at("2026-12-01T21:00:00Z")), 218_322_000);
        assert_eq!(next_revision(Some(i32::MAX), at("2026-12-01T21:00:00Z")), i32::MAX);
        assert_eq!(next_revision(None, at("2099-12-31T00:00:00Z")), i32::MAX, "clamped, not wrapped");
    }

    #[test]
    fn an_identity_change_withdraws_the_old_report_and_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let mut ledger = Ledger::open(dir.path()).unwrap();
        run(&s, &mut ledger, vec![row(2, "a", None, ArrestOffence::Other, false)], T + 1000);
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", Some("JA 1"), ArrestOffence::Other, false)], T + 2000);
        assert_eq!((p.published, p.withdrawn), (2, 1));
        assert_eq!((ev[0].event_id.as_str(), ev[0].revision, ev[0].withdrawn), ("a", rev(2), true));
        assert_eq!((ev[1].event_id.as_str(), ev[1].revision, ev[1].withdrawn), ("a:2", rev(2), false));
        assert_eq!(p.messages[0].0, "OP/MPS/a", "the withdrawal goes under the old key");
        assert!(p.messages[1].0.starts_with("OP/arrest/"), "{}", p.messages[1].0);
        let (p, ev) = run(&s, &mut ledger, vec![row(2, "a", Some("JA 1"), ArrestOffence::Weapons, false)], T + 3000);
        assert_eq!((p.published, ev[0].event_id.as_str(), ev[0].revision), (1, "a:2", rev(3)));
    }

    /// Regression: rows the hub certainly refuses (too far ahead, outside the
    /// window, from a force not taking part) were published and dead-lettered
    /// there, and the agent reported success.
    #[test]
    fn rows_the_hub_would_refuse_are_rejected_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let at = |rfc: &str| chrono::DateTime::parse_from_rfc3339(rfc).unwrap().timestamp_millis();
        let op = s.operations.get_mut("op").unwrap();
        (op.starts, op.ends) = (Some(at("2023-10-09T00:00:00+01:00")), Some(at("2023-10-16T00:00:00+01:00")));
        let mut ledger = Ledger::open(dir.path()).unwrap();
        let now = at("2023-10-16T12:00:00Z");
        let mut rows: Vec<ExportRow> =
            (2..=6).map(|l| row(l, &format!("r{l}"), None, ArrestOffence::Other, false)).collect();
        rows[1].occurred_at = now + MAX_FUTURE_SKEW_MS + 1;
        rows[2].occurred_at = at("2023-10-08T22:59:59.999Z");
        rows[3].occurred_at = at("2023-10-15T23:00:00Z");
        rows[4].occurred_at = at("2023-10-08T23:00:00Z");
        let (p, _) = run(&s, &mut ledger, rows.clone(), now);
        let got: Vec<(u64, &str)> = p.rejected.iter().map(|r| (r.line, r.reason.as_str())).collect();
        assert_eq!(
            got,
            [
                (3, "occurred_at 2023-10-17T12:00:00.001Z is more than 24 h after now (2023-10-16T12:00:00.000Z)"),
                (4, "occurred_at 2023-10-08T22:59:59.999Z is outside OP's window [2023-10-08T23:00:00.000Z, 2023-10-15T23:00:00.000Z)"),
                (5, "occurred_at 2023-10-15T23:00:00.000Z is outside OP's window [2023-10-08T23:00:00.000Z, 2023-10-15T23:00:00.000Z)"),
            ]
        );
        assert_eq!(p.published, 2, "line 2, and line 6 at the very start of the window");

        s.operations.get_mut("op").unwrap().forces = Some(["KENT".to_string()].into());
        let (p, _) = run(&s, &mut ledger, vec![rows[0].clone()], now);
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].reason, "force MPS is not taking part in OP (its forces in the agent config)");
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
        let (p, _) = run(&s, &mut ledger, rows, T);
        assert_eq!((p.published, p.unchanged), (1, 1));
        let lines: Vec<u64> = p.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [4, 5]);
        assert!(p.rejected[0].reason.contains("line 2"), "{}", p.rejected[0].reason);
        assert!(p.rejected[1].reason.contains("not configured"), "{}", p.rejected[1].reason);
    }
}
