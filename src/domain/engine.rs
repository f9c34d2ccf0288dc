//! The counting engine: rules R1–R5 over in-memory state. Pure and synchronous:
//! no I/O, no clock, no async. The rollup feeds it events and persists what it
//! reports as changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::event::OutcomeEvent;
use super::reason::Reason;
use super::totals::Totals;

/// A report is identified by `(force, event_id)`.
pub type ReportId = (String, String);

/// What applying one valid event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The first revision seen of this report.
    New,
    /// A higher revision replaced the report's state.
    Revised,
    /// The same revision with the same content (R1): nothing changes.
    Duplicate,
    /// A lower revision than the state (R1): nothing changes.
    Stale,
}

impl Applied {
    /// Whether the report's state changed (and so must be persisted).
    pub fn changed(self) -> bool {
        matches!(self, Applied::New | Applied::Revised)
    }
}

/// An event the engine refuses; it goes to the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("revision {revision} of {force}/{event_id} was already received with different content")]
    ConflictingRevision { force: String, event_id: String, revision: i32 },
    #[error("{force}/{event_id} was reported as {was}, this revision says {now}")]
    IdentityChanged { force: String, event_id: String, was: String, now: String },
}

impl Refused {
    pub fn reason(&self) -> Reason {
        match self {
            Refused::ConflictingRevision { .. } => Reason::ConflictingRevision,
            Refused::IdentityChanged { .. } => Reason::IdentityChanged,
        }
    }
}

/// The totals of one operation: joint, and the per-force view (R5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationTotals {
    pub joint: Totals,
    /// Only forces with at least one active outcome have a row.
    pub forces: BTreeMap<String, Totals>,
    /// The part of each force's row that comes from joint outcomes (two or
    /// more forces): what R5 credits it beyond its own outcomes.
    pub joint_credit: BTreeMap<String, Totals>,
    /// Joint totals by the day the outcome occurred (its lead's
    /// `occurred_at`), in the operation's local offset; only days with an
    /// active outcome have a row.
    pub days: BTreeMap<Day, Totals>,
}

/// One real-world outcome: every report sharing an identity key (R4).
#[derive(Default)]
struct Group {
    members: Vec<ReportId>,
}

/// What one outcome adds to its operation's totals.
struct Contribution {
    measures: Totals,
    forces: BTreeSet<String>,
    day: Day,
}

/// A calendar day, counted in days since 1970-01-01 in some fixed offset.
pub type Day = i64;

const DAY_MS: i64 = 86_400_000;

#[derive(Default)]
pub struct Engine {
    /// Each operation's offset from UTC, in ms, for its per-day totals.
    day_offsets: HashMap<String, i64>,
    reports: HashMap<ReportId, OutcomeEvent>,
    groups: HashMap<String, Group>,
    totals: HashMap<String, OperationTotals>,
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts per-day totals of `operation` in days of this offset from UTC
    /// (e.g. +01:00 for a week in British Summer Time). Set before applying.
    pub fn set_day_offset(&mut self, operation: &str, offset_ms: i64) {
        self.day_offsets.insert(operation.to_string(), offset_ms);
    }

    /// Applies one event that already passed validation and the hub's
    /// operation checks (R6). Totals afterwards depend only on the set of
    /// events applied, never on their order or repetition.
    pub fn apply(&mut self, event: OutcomeEvent) -> Result<Applied, Refused> {
        let id: ReportId = (event.force.clone(), event.event_id.clone());
        let applied = match self.reports.get(&id) {
            None => Applied::New,
            Some(state) => {
                let was = (state.operation.as_str(), state.kind(), state.joint_ref.as_deref());
                let now = (event.operation.as_str(), event.kind(), event.joint_ref.as_deref());
                if was != now {
                    return Err(Refused::IdentityChanged {
                        force: id.0,
                        event_id: id.1,
                        was: state.identity_key(),
                        now: event.identity_key(),
                    });
                }
                if event.revision == state.revision {
                    if *state == event {
                        return Ok(Applied::Duplicate);
                    }
                    return Err(Refused::ConflictingRevision { force: id.0, event_id: id.1, revision: event.revision });
                }
                if event.revision < state.revision {
                    return Ok(Applied::Stale);
                }
                Applied::Revised
            }
        };

        let key = event.identity_key();
        let operation = event.operation.clone();
        let before = self.contribution(&key);
        if applied == Applied::New {
            self.groups.entry(key.clone()).or_default().members.push(id.clone());
        }
        self.reports.insert(id, event);
        let after = self.contribution(&key);

        let totals = self.totals.entry(operation).or_default();
        if let Some(c) = before {
            add(totals, &c, -1);
        }
        if let Some(c) = after {
            add(totals, &c, 1);
        }
        Ok(applied)
    }

    /// The outcome's measures (its lead's, R4) and the forces credited (R5),
    /// or `None` when no report of it is active (R3).
    fn contribution(&self, key: &str) -> Option<Contribution> {
        let group = self.groups.get(key)?;
        let active: Vec<&OutcomeEvent> =
            group.members.iter().map(|id| &self.reports[id]).filter(|e| !e.withdrawn).collect();
        // Lead: latest reported_at; on a tie the smallest force, then the
        // smallest event_id (byte order, which is what `str` compares).
        let lead = active.iter().copied().max_by(|a, b| {
            a.reported_at
                .cmp(&b.reported_at)
                .then_with(|| b.force.cmp(&a.force))
                .then_with(|| b.event_id.cmp(&a.event_id))
        })?;
        let forces: BTreeSet<String> = active.iter().map(|e| e.force.clone()).collect();
        let mut measures = Totals::measures(&lead.outcome);
        measures.joint_outcomes = i64::from(forces.len() >= 2);
        let offset = self.day_offsets.get(&lead.operation).copied().unwrap_or(0);
        let day = (lead.occurred_at + offset).div_euclid(DAY_MS);
        Some(Contribution { measures, forces, day })
    }

    pub fn totals(&self, operation: &str) -> Option<&OperationTotals> {
        self.totals.get(operation)
    }

    pub fn operations(&self) -> impl Iterator<Item = (&String, &OperationTotals)> {
        self.totals.iter()
    }

    /// The current state of a report, if any revision of it was applied.
    pub fn report(&self, force: &str, event_id: &str) -> Option<&OutcomeEvent> {
        self.reports.get(&(force.to_string(), event_id.to_string()))
    }

    pub fn report_count(&self) -> usize {
        self.reports.len()
    }
}

fn add(totals: &mut OperationTotals, c: &Contribution, sign: i64) {
    totals.joint.add_scaled(&c.measures, sign);
    let day = totals.days.entry(c.day).or_default();
    day.add_scaled(&c.measures, sign);
    if day.is_zero() {
        totals.days.remove(&c.day);
    }
    let joint = c.forces.len() >= 2;
    for force in &c.forces {
        let row = totals.forces.entry(force.clone()).or_default();
        row.add_scaled(&c.measures, sign);
        if row.is_zero() {
            // Every active outcome has a non-zero measure, so a zero row means
            // the force has no active outcome left.
            totals.forces.remove(force);
        }
        if joint {
            let credit = totals.joint_credit.entry(force.clone()).or_default();
            credit.add_scaled(&c.measures, sign);
            if credit.is_zero() {
                totals.joint_credit.remove(force);
            }
        }
    }
}
