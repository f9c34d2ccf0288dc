//! The counting engine: rules R1–R5 over in-memory state. Pure and synchronous:
//! no I/O, no clock, no async. The rollup feeds it events and persists what it
//! reports as changed.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::event::{Millis, OutcomeEvent};
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
    #[error("counting {force}/{event_id} would overflow the total {figure}")]
    Overflow { force: String, event_id: String, figure: &'static str },
}

impl Refused {
    pub fn reason(&self) -> Reason {
        match self {
            Refused::ConflictingRevision { .. } => Reason::ConflictingRevision,
            Refused::IdentityChanged { .. } => Reason::IdentityChanged,
            Refused::Overflow { .. } => Reason::Invalid,
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
    /// The part of `joint` that comes from seizures whose lead report is
    /// provisional: how many (`provisional_seizures`) and of what.
    pub provisional: Totals,
    /// The same per credited force: which force's figures may still change.
    pub provisional_forces: BTreeMap<String, Totals>,
}

/// One real-world outcome: what its lead (R4) and its credited forces (R5)
/// need, kept so that an apply costs O(log N) in the outcome's size N, not
/// O(N): a placeholder `joint_ref` on every row of an export must not make
/// counting quadratic.
#[derive(Default)]
struct Group {
    /// Active reports in the lead order: the last one leads.
    active: Active,
    /// Active reports per force, sorted by force: the forces credited. A
    /// vector, since an outcome has few forces however many reports.
    forces: Vec<(String, u32)>,
}

/// Most outcomes have one or two reports: a sorted vector holds them in a
/// fraction of a B-tree's smallest node; past `SMALL` the B-tree keeps each
/// change O(log N).
enum Active {
    Small(Vec<LeadOrder>),
    Large(BTreeSet<LeadOrder>),
}

const SMALL: usize = 16;

impl Default for Active {
    fn default() -> Self {
        Active::Small(Vec::new())
    }
}

impl Active {
    fn insert(&mut self, o: LeadOrder) {
        match self {
            Active::Small(v) if v.len() < SMALL => {
                if let Err(at) = v.binary_search(&o) {
                    v.insert(at, o);
                }
            }
            Active::Small(v) => {
                let mut set: BTreeSet<LeadOrder> = std::mem::take(v).into_iter().collect();
                set.insert(o);
                *self = Active::Large(set);
            }
            Active::Large(set) => {
                set.insert(o);
            }
        }
    }

    fn remove(&mut self, o: &LeadOrder) {
        match self {
            Active::Small(v) => {
                if let Ok(at) = v.binary_search(o) {
                    v.remove(at);
                }
            }
            Active::Large(set) => {
                set.remove(o);
            }
        }
    }

    fn last(&self) -> Option<&LeadOrder> {
        match self {
            Active::Small(v) => v.last(),
            Active::Large(set) => set.last(),
        }
    }

    fn is_empty(&self) -> bool {
        self.last().is_none()
    }
}

/// R4's order: the latest `reported_at`; on a tie the smallest force, then
/// the smallest `event_id` (byte order, which is what `str` compares).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LeadOrder {
    reported_at: Millis,
    force: Reverse<String>,
    event_id: Reverse<String>,
}

impl LeadOrder {
    fn of(e: &OutcomeEvent) -> Self {
        LeadOrder { reported_at: e.reported_at, force: Reverse(e.force.clone()), event_id: Reverse(e.event_id.clone()) }
    }
}

impl Group {
    fn insert(&mut self, e: &OutcomeEvent) {
        self.active.insert(LeadOrder::of(e));
        match self.forces.binary_search_by(|(f, _)| f.as_str().cmp(&e.force)) {
            Ok(at) => self.forces[at].1 += 1,
            Err(at) => self.forces.insert(at, (e.force.clone(), 1)),
        }
    }

    fn remove(&mut self, e: &OutcomeEvent) {
        self.active.remove(&LeadOrder::of(e));
        if let Ok(at) = self.forces.binary_search_by(|(f, _)| f.as_str().cmp(&e.force)) {
            self.forces[at].1 -= 1;
            if self.forces[at].1 == 0 {
                self.forces.remove(at);
            }
        }
    }
}

/// What one outcome adds to its operation's totals.
#[derive(PartialEq, Eq)]
struct Contribution {
    measures: Totals,
    forces: Vec<String>,
    day: Day,
}

/// A calendar day, counted in days since 1970-01-01 in some fixed offset.
pub type Day = i64;

const DAY_MS: i64 = 86_400_000;

/// Where a figure is kept in an operation's totals.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Joint,
    Day(Day),
    Force(String),
    Credit(String),
    Provisional,
    ProvisionalForce(String),
}

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
    /// events applied, never on their order or repetition; an event whose
    /// application would overflow a total is refused and changes nothing.
    pub fn apply(&mut self, event: OutcomeEvent) -> Result<Applied, Refused> {
        let key = event.identity_key();
        self.put(Cow::Owned(event), &key)
    }

    /// [`Engine::apply`] for a caller that already built the event's identity
    /// key (the rollup checks the record's key against it) and keeps the
    /// event: the key is not built again, and the event is copied only when
    /// it becomes the report's state.
    pub fn apply_keyed(&mut self, event: &OutcomeEvent, key: &str) -> Result<Applied, Refused> {
        debug_assert_eq!(key, event.identity_key());
        self.put(Cow::Borrowed(event), key)
    }

    fn put(&mut self, event: Cow<'_, OutcomeEvent>, key: &str) -> Result<Applied, Refused> {
        let id: ReportId = (event.force.clone(), event.event_id.clone());
        let applied = self.compare(&id, &event)?;
        if !applied.changed() {
            return Ok(applied);
        }
        let before = self.contribution(key, None);
        let previous = self.reports.get(&id);
        let group = self.groups.entry(key.to_string()).or_default();
        if let Some(p) = previous.filter(|p| !p.withdrawn) {
            group.remove(p);
        }
        if !event.withdrawn {
            group.insert(&event);
        }
        let after = self.contribution(key, Some(&event));
        if before != after {
            let totals = self.totals.entry(event.operation.clone()).or_default();
            if let Err(figure) = change(totals, before.as_ref(), after.as_ref()) {
                self.undo(key, &id, &event);
                return Err(Refused::Overflow { force: id.0, event_id: id.1, figure });
            }
        }
        if self.groups.get(key).is_some_and(|g| g.active.is_empty()) {
            self.groups.remove(key);
        }
        self.reports.insert(id, event.into_owned());
        Ok(applied)
    }

    /// R1 and R2: what `event` is against the report's state, or why it is refused.
    fn compare(&self, id: &ReportId, event: &OutcomeEvent) -> Result<Applied, Refused> {
        let Some(state) = self.reports.get(id) else { return Ok(Applied::New) };
        let was = (state.operation.as_str(), state.kind(), state.joint_ref.as_deref());
        let now = (event.operation.as_str(), event.kind(), event.joint_ref.as_deref());
        if was != now {
            return Err(Refused::IdentityChanged {
                force: id.0.clone(),
                event_id: id.1.clone(),
                was: state.identity_key(),
                now: event.identity_key(),
            });
        }
        if event.revision == state.revision {
            if state == event {
                return Ok(Applied::Duplicate);
            }
            let (force, event_id) = id.clone();
            return Err(Refused::ConflictingRevision { force, event_id, revision: event.revision });
        }
        Ok(if event.revision < state.revision { Applied::Stale } else { Applied::Revised })
    }

    /// Puts the group back as it was before `event` (refused) was inserted.
    fn undo(&mut self, key: &str, id: &ReportId, event: &OutcomeEvent) {
        let previous = self.reports.get(id);
        let group = self.groups.get_mut(key).expect("the group was just changed");
        if !event.withdrawn {
            group.remove(event);
        }
        if let Some(p) = previous.filter(|p| !p.withdrawn) {
            group.insert(p);
        }
        if group.active.is_empty() {
            self.groups.remove(key);
        }
    }

    /// The outcome's measures (its lead's, R4) and the forces credited (R5),
    /// or `None` when no report of it is active (R3). `incoming` is the event
    /// being applied, which stands for its report's state (not yet stored).
    fn contribution(&self, key: &str, incoming: Option<&OutcomeEvent>) -> Option<Contribution> {
        let group = self.groups.get(key)?;
        let lead = group.active.last()?;
        let lead = match incoming {
            Some(e) if lead.force.0 == e.force && lead.event_id.0 == e.event_id => e,
            _ => &self.reports[&(lead.force.0.clone(), lead.event_id.0.clone())],
        };
        let mut measures = Totals::measures(&lead.outcome);
        measures.joint_outcomes = i64::from(group.forces.len() >= 2);
        let offset = self.day_offsets.get(&lead.operation).copied().unwrap_or(0);
        let day = (lead.occurred_at + offset).div_euclid(DAY_MS);
        Some(Contribution { measures, forces: group.forces.iter().map(|(f, _)| f.clone()).collect(), day })
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

    /// Starts `operation` from these totals: overflow tests need totals near
    /// `i64::MAX`, which valid events reach only after ~10^7 seizures.
    #[cfg(test)]
    pub(crate) fn seed_totals(&mut self, operation: &str, totals: OperationTotals) {
        self.totals.insert(operation.to_string(), totals);
    }
}

/// Replaces `before` by `after` in the operation's totals, or changes
/// nothing and names the figure that would overflow. Rows that become zero
/// go: every active outcome has a non-zero measure, so a zero row means the
/// force (or the day) has no active outcome left.
fn change(
    totals: &mut OperationTotals,
    before: Option<&Contribution>,
    after: Option<&Contribution>,
) -> Result<(), &'static str> {
    let mut staged: BTreeMap<Scope, Totals> = BTreeMap::new();
    for (c, sign) in [(before, -1), (after, 1)] {
        let Some(c) = c else { continue };
        let joint = c.forces.len() >= 2;
        let credits = c.forces.iter().filter(|_| joint).map(|f| Scope::Credit(f.clone()));
        // A provisional lead is what `provisional_seizures` counts (§5).
        let provisional = c.measures.provisional_seizures > 0;
        let pending = c.forces.iter().filter(|_| provisional).map(|f| Scope::ProvisionalForce(f.clone()));
        let scopes = [Scope::Joint, Scope::Day(c.day)]
            .into_iter()
            .chain(c.forces.iter().map(|f| Scope::Force(f.clone())))
            .chain(credits)
            .chain(provisional.then_some(Scope::Provisional))
            .chain(pending);
        for scope in scopes {
            let row = match staged.get(&scope) {
                Some(row) => *row,
                None => row(totals, &scope),
            };
            staged.insert(scope, row.checked_add_scaled(&c.measures, sign)?);
        }
    }
    for (scope, row) in staged {
        let keep = !row.is_zero();
        match scope {
            Scope::Joint => totals.joint = row,
            Scope::Day(d) => set_row(&mut totals.days, d, row, keep),
            Scope::Force(f) => set_row(&mut totals.forces, f, row, keep),
            Scope::Credit(f) => set_row(&mut totals.joint_credit, f, row, keep),
            Scope::Provisional => totals.provisional = row,
            Scope::ProvisionalForce(f) => set_row(&mut totals.provisional_forces, f, row, keep),
        }
    }
    Ok(())
}

fn row(totals: &OperationTotals, scope: &Scope) -> Totals {
    let found = match scope {
        Scope::Joint => Some(&totals.joint),
        Scope::Day(d) => totals.days.get(d),
        Scope::Force(f) => totals.forces.get(f),
        Scope::Credit(f) => totals.joint_credit.get(f),
        Scope::Provisional => Some(&totals.provisional),
        Scope::ProvisionalForce(f) => totals.provisional_forces.get(f),
    };
    found.copied().unwrap_or_default()
}

fn set_row<K: Ord>(rows: &mut BTreeMap<K, Totals>, key: K, row: Totals, keep: bool) {
    if keep {
        rows.insert(key, row);
    } else {
        rows.remove(&key);
    }
}
