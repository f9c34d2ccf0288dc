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

impl Plan {
    /// Moves what `part` counted, refused and warned of into this plan's
    /// tally, leaving `part` its entries and messages.
    pub fn absorb(&mut self, part: &mut Plan) {
        self.published += std::mem::take(&mut part.published);
        self.withdrawn += std::mem::take(&mut part.withdrawn);
        self.unchanged += std::mem::take(&mut part.unchanged);
        self.rejected.append(&mut part.rejected);
        self.warnings.append(&mut part.warnings);
    }

    /// Refusals and warnings in the order of their lines (a file planned in
    /// parts meets them out of order); those of the whole file first.
    pub fn in_line_order(mut self) -> Plan {
        self.rejected.sort_by_key(|r| r.line);
        self.warnings.sort_by_key(|w| w.line);
        self
    }
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

/// Where the content of a record's first row in a file is, for a later row
/// of the same record to be compared with (kept once, not copied).
enum Earlier<'a> {
    /// Unchanged: the ledger's.
    Known(&'a [u8]),
    /// Published: the plan entry at this index.
    Planned(usize),
}

/// Plans one file. `now` stamps `reported_at` on every new revision.
pub fn plan(
    settings: &AgentSettings,
    ledger: &Ledger,
    file: &str,
    rows: Vec<ExportRow>,
    rejected: Vec<RowError>,
    now: Millis,
) -> Result<Plan, LedgerError> {
    let facts = LedgerFacts::of(settings, ledger)?;
    let mut planner = Planner::new(settings, &facts, file, now);
    let mut plan = Plan { rejected, ..Plan::default() };
    // The ledger read once for the whole file, bucket by bucket.
    let ids: Vec<&str> = rows.iter().map(|r| r.record_id.as_str()).collect();
    let known = ledger.lookup(&ids)?;
    planner.plan_rows(&rows.iter().collect::<Vec<_>>(), &known, &mut plan)?;
    Ok(plan.in_line_order())
}

/// What a plan needs of the ledger besides its entries, read before
/// planning starts (so that planning can run beside the ledger's writes).
pub struct LedgerFacts {
    pub state_dir: std::path::PathBuf,
    /// The configured operations the ledger has published for.
    pub operations: BTreeSet<String>,
}

impl LedgerFacts {
    pub fn of(settings: &AgentSettings, ledger: &Ledger) -> Result<Self, LedgerError> {
        let mut operations = BTreeSet::new();
        for o in settings.operations.values() {
            if ledger.knows_operation(&o.id)? {
                operations.insert(o.id.clone());
            }
        }
        Ok(LedgerFacts { state_dir: ledger.state_dir().to_path_buf(), operations })
    }
}

/// Plans a file's rows in parts, `R` the rows' lifetime. What a file shares
/// across its parts is kept here: the keys, one HMAC per reference, which
/// operations were looked at.
pub struct Planner<'r> {
    settings: &'r AgentSettings,
    facts: &'r LedgerFacts,
    file: &'r str,
    now: Millis,
    /// Keyed once per operation, not per row.
    keys: HashMap<&'r str, Result<Pseudonymiser, String>>,
    /// One HMAC per distinct reference: partner rows repeat them.
    pseudonyms: foldhash::HashMap<(&'r str, Kind, &'r str), Result<String, String>>,
    looked_at: BTreeSet<&'r str>,
}

impl<'r> Planner<'r> {
    pub fn new(settings: &'r AgentSettings, facts: &'r LedgerFacts, file: &'r str, now: Millis) -> Self {
        let keys = (settings.operations.values())
            .filter_map(|o| Some((o.id.as_str(), Pseudonymiser::new(o.secret.as_ref()?.expose().as_bytes()))))
            .collect();
        Planner { settings, facts, file, now, keys, pseudonyms: Default::default(), looked_at: BTreeSet::new() }
    }

    /// Plans `rows` into `plan`, `known` being what the ledger holds for
    /// each of them. Every row of one record must be in the same call (a
    /// part is cut between ledger buckets, which never split a record), so
    /// that a record repeated in the file is compared with its first row.
    /// Errs only on a damaged ledger entry.
    pub fn plan_rows(
        &mut self,
        rows: &[&'r ExportRow],
        known: &[Option<Box<Entry>>],
        plan: &mut Plan,
    ) -> Result<(), LedgerError> {
        let (settings, file, now) = (self.settings, self.file, self.now);
        // A record may appear twice in one file: identical is harmless, differing
        // means the export itself is inconsistent, so the later row is refused.
        let mut seen: foldhash::HashMap<&str, (u64, Earlier<'_>)> = Default::default();
        seen.reserve(rows.len());
        let mut last = None;
        for (&row, known) in rows.iter().zip(known) {
            let reject = |reason: String| RowError { file: file.to_string(), line: row.line, reason };
            // Rows of one operation come together: resolved once per run of them, not per row.
            let resolved = match last {
                Some((operation, resolved)) if operation == row.operation => resolved,
                _ => {
                    if self.looked_at.insert(&row.operation) {
                        plan.warnings.extend(fresh_ledger(settings, self.facts, &row.operation, now));
                    }
                    let resolved = settings.operation(&row.operation).zip(self.keys.get(row.operation.as_str()));
                    last = Some((row.operation.as_str(), resolved));
                    resolved
                }
            };
            let Some((op, keyed)) = resolved else {
                plan.rejected.push(reject(format!(
                    "operation {:?} is not configured for this agent (add it with its secret to the agent config)",
                    row.operation
                )));
                continue;
            };
            if let Err(reason) = admissible(&settings.force, op, row.occurred_at, now) {
                plan.rejected.push(reject(reason));
                continue;
            }
            let mut outcome = row.outcome.clone();
            if let Outcome::Charge { charges } = &mut outcome {
                // One order for one meaning: a reordered cell is not a revision.
                charges.sort_by_key(|c| c.offence);
            }
            let joint_ref = match &row.joint_ref {
                None => None,
                Some(raw) => {
                    let key = (row.operation.as_str(), outcome.kind(), raw.as_str());
                    let keyed = || keyed.as_ref().map_err(Clone::clone).and_then(|k| k.pseudonym(key.1, raw));
                    match self.pseudonyms.entry(key).or_insert_with(keyed) {
                        Ok(r) => Some(r.clone()),
                        Err(e) => {
                            plan.rejected.push(reject(format!("joint_ref: {e}")));
                            continue;
                        }
                    }
                }
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
            if let Some((first, earlier)) = seen.get(row.record_id.as_str()) {
                let earlier = match earlier {
                    Earlier::Known(content) => content,
                    Earlier::Planned(j) => plan.entries[*j].content.as_slice(),
                };
                if earlier == body {
                    plan.unchanged += 1;
                } else {
                    plan.rejected
                        .push(reject(format!("record_id {:?} differs from its row at line {first}", row.record_id)));
                }
                continue;
            }
            if let (Kind::LineClosure, Some(raw)) = (event.kind(), &row.joint_ref) {
                plan.warnings.extend(suspicious_line(raw).map(|warning| Warning { line: Some(row.line), warning }));
            }
            // `seen` guarantees one plan entry per record, so `known` is current.
            let planned = Earlier::Planned(plan.entries.len());
            match known {
                Some(prev) if prev.content == body => {
                    plan.unchanged += 1;
                    seen.insert(&row.record_id, (row.line, Earlier::Known(&prev.content)));
                }
                Some(prev) => match revise(plan, prev, event, body, now)? {
                    Ok(()) => _ = seen.insert(&row.record_id, (row.line, planned)),
                    Err(reason) => plan.rejected.push(reject(reason)),
                },
                None => {
                    push(plan, &row.record_id, 1, &event, body);
                    seen.insert(&row.record_id, (row.line, planned));
                }
            }
        }
        Ok(())
    }
}

/// A record the ledger knows, with other content: the next revision of the
/// same report, or, when its operation, kind or joint_ref changed, the old
/// report withdrawn and the outcome reported afresh under a new event id
/// (contract §3). The inner error is a row refusal.
fn revise(
    plan: &mut Plan,
    prev: &Entry,
    mut event: OutcomeEvent,
    body: Vec<u8>,
    now: Millis,
) -> Result<Result<(), String>, LedgerError> {
    let mut old = prev.event()?;
    event.event_id = prev.event_id.clone();
    if old.identity_key() == event.identity_key() {
        event.revision = next_revision(Some(prev.revision), now);
        push(plan, &prev.record_id, prev.generation, &event, body);
        return Ok(Ok(()));
    }
    let generation = prev.generation + 1;
    event.event_id = Entry::event_id_of(&prev.record_id, generation);
    if event.event_id.len() > 128 {
        return Ok(Err(format!("record_id {:?} is too long to be re-reported under a new event id", prev.record_id)));
    }
    if !old.withdrawn {
        old.revision = next_revision(Some(old.revision), now);
        old.withdrawn = true;
        old.reported_at = now;
        plan.messages.push((old.identity_key(), Registry::builtin().encode(&old)));
        plan.published += 1;
        plan.withdrawn += 1;
    }
    push(plan, &prev.record_id, generation, &event, body);
    Ok(Ok(()))
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
fn fresh_ledger(settings: &AgentSettings, facts: &LedgerFacts, operation: &str, now: Millis) -> Option<Warning> {
    let starts = settings.operation(operation).and_then(|o| o.starts)?;
    if starts > now || facts.operations.contains(operation) {
        return None;
    }
    let state_dir = facts.state_dir.display();
    warn!(%operation, %state_dir, starts = %fmt_millis(starts), "A ledger new to an operation that has started.");
    Some(Warning {
        line: None,
        warning: format!(
            "operation {operation} started at {}, and the ledger in {state_dir} has published nothing for it: \
             if this force published for it before (a lost or replaced ledger), these rows go out above the \
             revisions it published, but reports it published that these exports no longer hold are not \
             withdrawn: publish the operation's complete export",
            fmt_millis(starts)
        ),
    })
}

fn push(plan: &mut Plan, record_id: &str, generation: i64, event: &OutcomeEvent, body: Vec<u8>) {
    plan.entries.push(Entry {
        record_id: record_id.to_string(),
        event_id: event.event_id.clone(),
        generation,
        revision: event.revision,
        reported_at: event.reported_at,
        content: body,
    });
    plan.messages.push((event.identity_key(), Registry::builtin().encode(event)));
    plan.published += 1;
    plan.withdrawn += u64::from(event.withdrawn);
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::{AgentKafka, AgentOperation, Secret};
    use crate::domain::ArrestOffence;

    pub(in crate::agent) fn settings(dir: &std::path::Path) -> AgentSettings {
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
            signing_key: None,
            metrics: Default::default(),
        }
    }

    pub(in crate::agent) fn row(
        line: u64,
        id: &str,
        joint: Option<&str>,
        group: ArrestOffence,
        withdrawn: bool,
    ) -> ExportRow {
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
    pub(in crate::agent) const T: Millis = 1_697_068_800_000;

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
