//! Rule tests for the engine, and property tests against a plain reference model.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use super::*;
use crate::domain::engine::Day;

const T0: Millis = 1_696_806_000_000; // 2023-10-09T00:00:00+01:00

fn event(force: &str, id: &str, rev: i32, joint: Option<&str>, outcome: Outcome) -> OutcomeEvent {
    OutcomeEvent {
        event_id: id.into(),
        revision: rev,
        force: force.into(),
        operation: "OP".into(),
        occurred_at: T0,
        reported_at: T0 + i64::from(rev) * 1000,
        withdrawn: false,
        joint_ref: joint.map(str::to_string),
        outcome,
    }
}

fn arrest() -> Outcome {
    Outcome::Arrest { offence_group: ArrestOffence::DrugSupply }
}

fn drugs(mg: i64) -> Outcome {
    Outcome::Seizure { item: SeizureItem::DrugClassA, quantity: mg, provisional: false }
}

fn joint(engine: &Engine) -> Totals {
    engine.totals("OP").map(|t| t.joint).unwrap_or_default()
}

#[test]
fn r1_duplicate_and_lower_revision_change_nothing() {
    let mut e = Engine::new();
    assert_eq!(e.apply(event("MPS", "a", 2, None, drugs(500))), Ok(Applied::New));
    assert_eq!(e.apply(event("MPS", "a", 2, None, drugs(500))), Ok(Applied::Duplicate));
    assert_eq!(e.apply(event("MPS", "a", 1, None, drugs(900))), Ok(Applied::Stale));
    assert_eq!(joint(&e).drugs_class_a_mg, 500);
    assert_eq!(e.apply(event("MPS", "a", 3, None, drugs(700))), Ok(Applied::Revised));
    assert_eq!(joint(&e).drugs_class_a_mg, 700);
}

/// "3 seizures still provisional" must say of what and whose: the
/// provisional part follows the lead (R4) and its credited forces (R5).
#[test]
fn the_provisional_part_says_of_what_and_which_forces_and_empties_when_confirmed() {
    let weighed = |mg, provisional| Outcome::Seizure { item: SeizureItem::DrugClassA, quantity: mg, provisional };
    let mut e = Engine::new();
    e.apply(event("MPS", "a", 1, Some("j"), weighed(1_250_000, true))).unwrap();
    e.apply(event("KNT", "b", 1, None, drugs(40))).unwrap();
    e.apply(event("TVP", "c", 2, Some("j"), weighed(1_300_000, true))).unwrap();
    let t = e.totals("OP").unwrap();
    assert_eq!((t.provisional.provisional_seizures, t.provisional.drugs_class_a_mg), (1, 1_300_000), "the lead's");
    assert_eq!(t.provisional_forces.keys().collect::<Vec<_>>(), ["MPS", "TVP"]);
    assert_eq!(t.provisional_forces["MPS"].drugs_class_a_mg, 1_300_000);
    // The lead confirmed after weighing: nothing provisional is left.
    e.apply(event("TVP", "c", 3, Some("j"), weighed(1_280_000, false))).unwrap();
    let t = e.totals("OP").unwrap();
    assert!(t.provisional.is_zero() && t.provisional_forces.is_empty(), "{t:?}");
    assert_eq!(t.joint.drugs_class_a_mg, 1_280_040);
}

#[test]
fn r2_same_revision_different_content_is_refused_and_changes_nothing() {
    let mut e = Engine::new();
    e.apply(event("MPS", "a", 1, None, drugs(500))).unwrap();
    let err = e.apply(event("MPS", "a", 1, None, drugs(600))).unwrap_err();
    assert_eq!(err.reason(), Reason::ConflictingRevision);
    assert_eq!(joint(&e).drugs_class_a_mg, 500);
}

#[test]
fn identity_change_is_refused_whatever_the_revision() {
    let mut e = Engine::new();
    e.apply(event("MPS", "a", 2, None, arrest())).unwrap();
    for rev in [1, 2, 3] {
        let err = e.apply(event("MPS", "a", rev, Some("j"), arrest())).unwrap_err();
        assert_eq!(err.reason(), Reason::IdentityChanged, "revision {rev}");
    }
    let err = e.apply(event("MPS", "a", 3, None, drugs(1))).unwrap_err();
    assert_eq!(err.reason(), Reason::IdentityChanged);
    assert_eq!(joint(&e).arrests, 1);
}

#[test]
fn r3_withdrawn_counts_nothing_and_removes_the_force_row() {
    let mut e = Engine::new();
    e.apply(event("MPS", "a", 1, None, arrest())).unwrap();
    let mut w = event("MPS", "a", 2, None, arrest());
    w.withdrawn = true;
    e.apply(w).unwrap();
    assert!(joint(&e).is_zero());
    assert!(e.totals("OP").unwrap().forces.is_empty());
}

#[test]
fn r4_joint_outcome_counts_once_with_the_latest_report() {
    let mut e = Engine::new();
    let mut a = event("MPS", "m1", 1, Some("J"), drugs(1_200_000));
    let mut b = event("KENT", "k1", 1, Some("J"), drugs(1_250_000));
    a.reported_at = T0 + 10;
    b.reported_at = T0 + 20;
    e.apply(a.clone()).unwrap();
    e.apply(b).unwrap();
    let t = joint(&e);
    assert_eq!((t.drugs_class_a_mg, t.joint_outcomes), (1_250_000, 1));
    // A later revision from MPS takes the lead.
    a.revision = 2;
    a.reported_at = T0 + 30;
    a.outcome = drugs(1_300_000);
    e.apply(a).unwrap();
    assert_eq!(joint(&e).drugs_class_a_mg, 1_300_000);
}

#[test]
fn r4_ties_go_to_the_smallest_force_then_the_smallest_event_id() {
    let mut e = Engine::new();
    e.apply(event("KENT", "k", 1, Some("J"), drugs(2))).unwrap();
    e.apply(event("ESSEX", "z", 1, Some("J"), drugs(3))).unwrap();
    assert_eq!(joint(&e).drugs_class_a_mg, 3, "ESSEX < KENT");
    e.apply(event("ESSEX", "b", 1, Some("J"), drugs(4))).unwrap();
    assert_eq!(joint(&e).drugs_class_a_mg, 4, "b < z");
    let t = e.totals("OP").unwrap();
    assert_eq!(t.forces.len(), 2);
    assert_eq!(t.forces["KENT"].drugs_class_a_mg, 4, "each force gets the lead's measures");
}

#[test]
fn r4_when_the_lead_is_withdrawn_the_next_one_leads() {
    let mut e = Engine::new();
    e.apply(event("MPS", "m", 1, Some("J"), drugs(10))).unwrap();
    e.apply(event("KENT", "k", 2, Some("J"), drugs(20))).unwrap();
    assert_eq!(joint(&e).drugs_class_a_mg, 20);
    let mut w = event("KENT", "k", 3, Some("J"), drugs(20));
    w.withdrawn = true;
    e.apply(w).unwrap();
    let t = e.totals("OP").unwrap();
    assert_eq!((t.joint.drugs_class_a_mg, t.joint.joint_outcomes), (10, 0));
    assert_eq!(t.forces.keys().collect::<Vec<_>>(), ["MPS"]);
}

#[test]
fn r4_same_ref_in_another_kind_or_operation_is_another_outcome() {
    let mut e = Engine::new();
    e.apply(event("MPS", "a", 1, Some("J"), arrest())).unwrap();
    e.apply(event("KENT", "b", 1, Some("J"), drugs(5))).unwrap();
    let mut other = event("ESSEX", "c", 1, Some("J"), arrest());
    other.operation = "OTHER".into();
    e.apply(other).unwrap();
    let t = joint(&e);
    assert_eq!((t.arrests, t.drugs_class_a_mg, t.joint_outcomes), (1, 5, 0));
}

#[test]
fn r5_each_force_is_credited_and_joint_outcomes_counts_multi_force_outcomes() {
    let mut e = Engine::new();
    e.apply(event("MPS", "a", 1, Some("L1"), Outcome::LineClosure { closure: ClosureType::Other })).unwrap();
    e.apply(event("KENT", "b", 1, Some("L1"), Outcome::LineClosure { closure: ClosureType::Other })).unwrap();
    e.apply(event("MPS", "c", 1, None, Outcome::LineClosure { closure: ClosureType::Other })).unwrap();
    let t = e.totals("OP").unwrap();
    assert_eq!((t.joint.lines_closed, t.joint.joint_outcomes), (2, 1));
    assert_eq!((t.forces["MPS"].lines_closed, t.forces["MPS"].joint_outcomes), (2, 1));
    assert_eq!((t.forces["KENT"].lines_closed, t.forces["KENT"].joint_outcomes), (1, 1));
    // The joint line is each force's joint credit; MPS's own line is not.
    assert_eq!((t.joint_credit["MPS"].lines_closed, t.joint_credit["KENT"].lines_closed), (1, 1));
}

#[test]
fn days_follow_the_lead_report_in_the_operation_offset() {
    let mut e = Engine::new();
    e.set_day_offset("OP", 3_600_000); // +01:00
                                       // 2023-10-09T23:30:00Z is 10 October at +01:00.
    let mut a = event("MPS", "a", 1, Some("J"), arrest());
    a.occurred_at = 1_696_894_200_000;
    a.reported_at = T0 + 10;
    e.apply(a.clone()).unwrap();
    let days: Vec<Day> = e.totals("OP").unwrap().days.keys().copied().collect();
    assert_eq!(days, [19_640]); // 2023-10-10
                                // A later report of the same outcome, on another day, takes the lead and moves it.
    let mut b = event("KENT", "b", 1, Some("J"), arrest());
    b.occurred_at = 1_696_894_200_000 + 86_400_000;
    b.reported_at = T0 + 20;
    e.apply(b).unwrap();
    let t = e.totals("OP").unwrap();
    assert_eq!(t.days.keys().copied().collect::<Vec<_>>(), [19_641]);
    assert_eq!(t.days[&19_641].arrests, 1);
}

#[test]
fn two_reports_of_one_force_with_one_ref_are_not_a_joint_outcome() {
    let mut e = Engine::new();
    e.apply(event("MPS", "a", 1, Some("J"), arrest())).unwrap();
    e.apply(event("MPS", "b", 1, Some("J"), arrest())).unwrap();
    let t = joint(&e);
    assert_eq!((t.arrests, t.joint_outcomes), (1, 0));
}

// ---- property tests: any permutation and duplication of a valid set gives
// ---- the totals of a plain reference model.

/// The reference model, written as plainly as the contract reads.
fn reference(events: &[OutcomeEvent]) -> BTreeMap<String, OperationTotals> {
    let mut state: HashMap<(String, String), &OutcomeEvent> = HashMap::new();
    for e in events {
        let id = (e.force.clone(), e.event_id.clone());
        if state.get(&id).is_none_or(|s| s.revision < e.revision) {
            state.insert(id, e);
        }
    }
    let mut outcomes: BTreeMap<String, Vec<&OutcomeEvent>> = BTreeMap::new();
    for e in state.values().filter(|e| !e.withdrawn) {
        outcomes.entry(e.identity_key()).or_default().push(e);
    }
    let mut out: BTreeMap<String, OperationTotals> = BTreeMap::new();
    for reports in outcomes.values() {
        let mut sorted = reports.clone();
        sorted.sort_by(|a, b| {
            b.reported_at.cmp(&a.reported_at).then(a.force.cmp(&b.force)).then(a.event_id.cmp(&b.event_id))
        });
        let lead = sorted[0];
        let mut forces: Vec<&str> = reports.iter().map(|e| e.force.as_str()).collect();
        forces.sort();
        forces.dedup();
        let mut m = Totals::measures(&lead.outcome);
        m.joint_outcomes = if forces.len() > 1 { 1 } else { 0 };
        let op = out.entry(lead.operation.clone()).or_default();
        op.joint.add_scaled(&m, 1);
        op.days.entry(lead.occurred_at.div_euclid(86_400_000)).or_default().add_scaled(&m, 1);
        let joint = forces.len() > 1;
        let provisional = matches!(lead.outcome, Outcome::Seizure { provisional: true, .. });
        if provisional {
            op.provisional.add_scaled(&m, 1);
        }
        for f in forces {
            op.forces.entry(f.to_string()).or_default().add_scaled(&m, 1);
            if joint {
                op.joint_credit.entry(f.to_string()).or_default().add_scaled(&m, 1);
            }
            if provisional {
                op.provisional_forces.entry(f.to_string()).or_default().add_scaled(&m, 1);
            }
        }
    }
    out
}

fn outcome_of(kind: u8, n: i64, flag: bool) -> Outcome {
    match kind {
        0 => arrest(),
        1 => Outcome::Charge {
            charges: vec![
                ChargeCount { offence: ChargeOffence::DrugSupplyClassA, count: (n % 5 + 1) as i32 },
                ChargeCount { offence: ChargeOffence::Other, count: 1 },
            ],
        },
        2 => Outcome::Seizure { item: SeizureItem::Cash, quantity: n + 1, provisional: flag },
        3 => Outcome::LineClosure { closure: ClosureType::HolderCharged },
        4 => Outcome::Safeguarding { referral: if flag { Referral::Nrm } else { Referral::SupportProvider } },
        _ => Outcome::Engagement { people: (n % 300 + 1) as i32 },
    }
}

/// A valid event set: each report keeps one identity; each revision one content.
fn valid_set() -> impl Strategy<Value = Vec<OutcomeEvent>> {
    // Keyed by (force, event id): each report gets exactly one identity.
    let identity = (0..6u8, proptest::option::of(0..3u8), 0..2usize);
    proptest::collection::btree_map((0..4usize, 0..5u8), identity, 1..25)
        .prop_flat_map(|reports| {
            let ids: Vec<_> = reports.into_iter().collect();
            let n = ids.len();
            (
                Just(ids),
                proptest::collection::vec(
                    proptest::collection::vec((0..1000i64, any::<bool>(), 0..40i64, any::<bool>()), 1..4),
                    n,
                ),
            )
        })
        .prop_map(|(ids, revisions)| {
            let forces = ["AA", "BB", "CC", "DD"];
            let mut events = Vec::new();
            for (((f, id), (kind, joint, op)), revs) in ids.into_iter().zip(revisions) {
                for (i, (n, flag, at, withdrawn)) in revs.into_iter().enumerate() {
                    events.push(OutcomeEvent {
                        event_id: format!("e{id}"),
                        revision: i as i32 + 1,
                        force: forces[f].into(),
                        operation: ["OP", "OQ"][op].into(),
                        occurred_at: T0 + (n % 3) * 86_400_000,
                        reported_at: T0 + at,
                        withdrawn,
                        joint_ref: joint.map(|j| format!("j{j}")),
                        outcome: outcome_of(kind, n, flag),
                    });
                }
            }
            events
        })
}

fn engine_totals(events: &[OutcomeEvent]) -> BTreeMap<String, OperationTotals> {
    let mut e = Engine::new();
    for ev in events {
        e.apply(ev.clone()).expect("a valid set is never refused");
    }
    e.operations().filter(|(_, t)| !t.joint.is_zero()).map(|(k, v)| (k.clone(), v.clone())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_order_and_duplication_gives_the_reference_totals(
        events in valid_set(),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..80),
        seed in any::<u64>(),
    ) {
        // Every event at least once, plus random repeats, in a seeded shuffle.
        let mut stream: Vec<OutcomeEvent> = events.clone();
        stream.extend(order.iter().map(|i| events[i.index(events.len())].clone()));
        let mut rng = seed;
        for i in (1..stream.len()).rev() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            stream.swap(i, (rng >> 33) as usize % (i + 1));
        }
        let want: BTreeMap<_, _> = reference(&events).into_iter().filter(|(_, t)| !t.joint.is_zero()).collect();
        prop_assert_eq!(engine_totals(&stream), want);
    }

    #[test]
    fn per_force_rows_add_up_to_joint_plus_extra_credit(events in valid_set()) {
        for (_, t) in engine_totals(&events) {
            let mut sum = Totals::default();
            for row in t.forces.values() { sum.add_scaled(row, 1); }
            // Joint outcomes credit each of their forces, so rows never sum below the joint total.
            for (name, joint) in t.joint.iter() {
                prop_assert!(sum.get(name).unwrap() >= joint, "{} {} < {}", name, sum.get(name).unwrap(), joint);
            }
            if t.joint.joint_outcomes == 0 {
                prop_assert_eq!(sum, t.joint);
            }
        }
    }
}

// ---- the partition dimension (§3): every report of one identity key on
// ---- one partition, partitions consumed in any interleaving.

/// A seeded LCG: proptest shrinks the seed, and the order it gives is plain.
fn next(rng: &mut u64) -> u64 {
    *rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *rng >> 33
}

/// `events` split over `n` partitions by identity key (each key to a
/// partition picked at random), each partition shuffled.
fn split(events: &[OutcomeEvent], n: usize, rng: &mut u64) -> Vec<Vec<OutcomeEvent>> {
    let mut home: HashMap<String, usize> = HashMap::new();
    let mut parts = vec![Vec::new(); n];
    for e in events {
        let p = *home.entry(e.identity_key()).or_insert_with(|| next(rng) as usize % n);
        parts[p].push(e.clone());
    }
    for part in &mut parts {
        for i in (1..part.len()).rev() {
            part.swap(i, next(rng) as usize % (i + 1));
        }
    }
    parts
}

/// The partitions consumed in a random interleaving, each in its own order.
fn interleave(mut parts: Vec<Vec<OutcomeEvent>>, rng: &mut u64) -> Vec<OutcomeEvent> {
    for part in &mut parts {
        part.reverse();
    }
    let mut out = Vec::new();
    while parts.iter().any(|p| !p.is_empty()) {
        let open: Vec<usize> = (0..parts.len()).filter(|&i| !parts[i].is_empty()).collect();
        let p = open[next(rng) as usize % open.len()];
        out.extend(parts[p].pop());
    }
    out
}

/// Adds one operation's totals into another, row by row.
fn add_into(sum: &mut OperationTotals, t: &OperationTotals) {
    fn rows<K: Ord + Clone>(sum: &mut BTreeMap<K, Totals>, add: &BTreeMap<K, Totals>) {
        for (k, row) in add {
            sum.entry(k.clone()).or_default().add_scaled(row, 1);
        }
    }
    sum.joint.add_scaled(&t.joint, 1);
    sum.provisional.add_scaled(&t.provisional, 1);
    rows(&mut sum.forces, &t.forces);
    rows(&mut sum.joint_credit, &t.joint_credit);
    rows(&mut sum.days, &t.days);
    rows(&mut sum.provisional_forces, &t.provisional_forces);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// One engine fed the partitions in any interleaving, and one engine per
    /// partition summed, both give the reference totals: the design's
    /// "an operation's totals are the sum over partitions" holds because
    /// R4 groups reports by the identity key that picks the partition.
    #[test]
    fn any_split_over_partitions_by_identity_key_gives_the_reference_totals(
        events in valid_set(),
        repeats in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        n in 1..8usize,
        seed in any::<u64>(),
    ) {
        let mut stream = events.clone();
        stream.extend(repeats.iter().map(|i| events[i.index(events.len())].clone()));
        let mut rng = seed;
        let parts = split(&stream, n, &mut rng);
        let want: BTreeMap<_, _> = reference(&events).into_iter().filter(|(_, t)| !t.joint.is_zero()).collect();

        let mut summed: BTreeMap<String, OperationTotals> = BTreeMap::new();
        for part in &parts {
            for (op, t) in engine_totals(part) {
                add_into(summed.entry(op).or_default(), &t);
            }
        }
        prop_assert_eq!(&summed, &want, "per-partition engines, summed");
        prop_assert_eq!(engine_totals(&interleave(parts, &mut rng)), want, "one engine, partitions interleaved");
    }
}

// ---- size and overflow

/// Regression: the lead was found by walking every member of the group on
/// each apply, so N reports of one outcome cost O(N²) (20,000 took 83 s).
#[test]
fn a_hundred_thousand_reports_of_one_outcome_count_once_in_linear_time() {
    let mut e = Engine::new();
    let forces = ["MPS", "KENT", "ESSEX"];
    for i in 0..100_000i64 {
        let mut ev = event(forces[(i % 3) as usize], &format!("r{i}"), 1, Some("N/A"), drugs(i + 1));
        ev.reported_at = T0 + i % 1000;
        e.apply(ev).unwrap();
    }
    let t = e.totals("OP").unwrap();
    // Lead: latest reported_at (T0 + 999), then the smallest force (ESSEX:
    // i % 3 == 2), then the smallest event_id in byte order.
    let lead = (0..100_000i64).filter(|i| i % 1000 == 999 && i % 3 == 2).min_by_key(|i| format!("r{i}")).unwrap();
    assert_eq!((t.joint.drugs_class_a_mg, t.joint.joint_outcomes), (lead + 1, 1));
    assert_eq!(t.forces.len(), 3);
    // Withdrawing every ESSEX report hands the lead to the next in order.
    for i in (2..100_000i64).step_by(3) {
        let mut w = event("ESSEX", &format!("r{i}"), 2, Some("N/A"), drugs(i + 1));
        w.withdrawn = true;
        e.apply(w).unwrap();
    }
    let t = e.totals("OP").unwrap();
    let lead = (0..100_000i64).filter(|i| i % 1000 == 999 && i % 3 == 1).min_by_key(|i| format!("r{i}")).unwrap();
    assert_eq!(t.joint.drugs_class_a_mg, lead + 1, "KENT and MPS tie on time; KENT is the smaller code");
    assert_eq!(t.forces.keys().collect::<Vec<_>>(), ["KENT", "MPS"]);
}

#[test]
fn an_event_that_would_overflow_a_total_is_refused_and_changes_nothing() {
    let mut e = Engine::new();
    let mut seeded = OperationTotals::default();
    seeded.joint.cash_pence = i64::MAX - 10;
    e.seed_totals("OP", seeded);
    let cash = |n| Outcome::Seizure { item: SeizureItem::Cash, quantity: n, provisional: false };
    let err = e.apply(event("MPS", "a", 1, None, cash(11))).unwrap_err();
    assert_eq!(err.reason(), Reason::Invalid);
    assert!(err.to_string().contains("cash_pence"), "{err}");
    assert_eq!(joint(&e).cash_pence, i64::MAX - 10, "nothing changed");
    assert!(e.report("MPS", "a").is_none(), "the refused event is not the report's state");
    assert!(e.totals("OP").unwrap().forces.is_empty());
    // Everything else goes on: a smaller amount, then another figure.
    assert_eq!(e.apply(event("MPS", "a", 1, None, cash(10))), Ok(Applied::New));
    assert_eq!(e.apply(event("MPS", "b", 1, None, arrest())), Ok(Applied::New));
    assert_eq!((joint(&e).cash_pence, joint(&e).arrests), (i64::MAX, 1));
    // A revision that would overflow leaves the earlier revision counted.
    assert!(e.apply(event("MPS", "a", 2, None, cash(11))).is_err());
    assert_eq!(e.report("MPS", "a").unwrap().revision, 1);
    assert_eq!(joint(&e).cash_pence, i64::MAX);
}
