//! A deterministic synthetic stream of valid events, with the noise the real
//! week has: revisions, withdrawals, joint outcomes and repeated deliveries.
//! Used by benchmarks and by the crash and restart tests; pure.

use crate::domain::{
    ArrestOffence, ChargeCount, ChargeOffence, ClosureType, Millis, Outcome, OutcomeEvent, Referral, SeizureItem,
};

pub const OPERATION: &str = "LOAD-2023";
/// 2023-10-01T00:00:00Z and 2023-11-01T00:00:00Z: the synthetic window.
pub const STARTS: Millis = 1_696_118_400_000;
pub const ENDS: Millis = 1_698_796_800_000;
pub const FORCES: [&str; 8] = ["MPS", "KENT", "ESSEX", "SUSSEX", "HERTS", "TVP", "SURREY", "BTP"];

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn outcome(kind: u64, rng: &mut Rng) -> Outcome {
    match kind {
        0 => Outcome::Arrest { offence_group: ArrestOffence::ALL[rng.below(5) as usize] },
        1 => {
            let mut charges =
                vec![ChargeCount { offence: ChargeOffence::DrugSupplyClassA, count: 1 + rng.below(4) as i32 }];
            if rng.below(2) == 0 {
                charges.push(ChargeCount { offence: ChargeOffence::ALL[1 + rng.below(4) as usize], count: 1 });
            }
            Outcome::Charge { charges }
        }
        2 => Outcome::Seizure {
            item: SeizureItem::ALL[rng.below(5) as usize],
            quantity: 1 + rng.below(5_000_000) as i64,
            provisional: rng.below(4) == 0,
        },
        3 => Outcome::LineClosure { closure: ClosureType::ALL[rng.below(3) as usize] },
        4 => Outcome::Safeguarding { referral: Referral::ALL[rng.below(3) as usize] },
        _ => Outcome::Engagement { people: 1 + rng.below(500) as i32 },
    }
}

/// About `reports × 2.2` events for `reports` reports: each report has one to
/// three revisions (a few end withdrawn), some share a `joint_ref` with
/// reports of other forces, and about one event in ten is sent twice.
pub fn generate(reports: usize, seed: u64) -> Vec<OutcomeEvent> {
    let mut rng = Rng(seed);
    let refs = (reports / 6).max(1) as u64;
    let mut events = Vec::with_capacity(reports * 23 / 10);
    for i in 0..reports {
        let force = FORCES[rng.below(FORCES.len() as u64) as usize];
        // Joint references are per kind, so the kind follows from the ref.
        let joint = rng.below(3) == 0;
        let (kind, joint_ref) = if joint {
            let r = rng.below(refs);
            (r % 6, Some(format!("{:032x}", r.wrapping_mul(0x9E37_79B9_7F4A_7C15))))
        } else {
            (rng.below(6), None)
        };
        let occurred_at = STARTS + rng.below((ENDS - STARTS) as u64 - 86_400_000) as i64;
        let revisions = 1 + rng.below(3) as i32;
        let mut reported_at = occurred_at + rng.below(3_600_000) as i64;
        for revision in 1..=revisions {
            let withdrawn = revision == revisions && rng.below(20) == 0;
            let event = OutcomeEvent {
                event_id: format!("{force}-{i:08}"),
                revision,
                force: force.to_string(),
                operation: OPERATION.to_string(),
                occurred_at,
                reported_at,
                withdrawn,
                joint_ref: joint_ref.clone(),
                outcome: outcome(kind, &mut rng),
            };
            if rng.below(10) == 0 {
                events.push(event.clone());
            }
            events.push(event);
            reported_at += 1 + rng.below(86_400_000) as i64;
        }
    }
    events
}

/// The shape of a synthetic stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// [`generate`]: revisions, withdrawals, joint outcomes and repeats.
    Mixed,
    /// One revision per report, every report its own outcome.
    Separate,
    /// Every report of every force under one `joint_ref`: the placeholder
    /// reference (`N/A`) a careless export puts on every row.
    OneOutcome,
}

/// A stream of `reports` single-revision seizure reports in `shape`.
pub fn generate_shape(shape: Shape, reports: usize, seed: u64) -> Vec<OutcomeEvent> {
    if shape == Shape::Mixed {
        return generate(reports, seed);
    }
    let mut rng = Rng(seed);
    (0..reports)
        .map(|i| {
            let force = FORCES[i % FORCES.len()];
            let occurred_at = STARTS + rng.below((ENDS - STARTS) as u64 - 86_400_000) as i64;
            OutcomeEvent {
                event_id: format!("{force}-{i:08}"),
                revision: 1,
                force: force.to_string(),
                operation: OPERATION.to_string(),
                occurred_at,
                reported_at: occurred_at + rng.below(3_600_000) as i64,
                withdrawn: false,
                joint_ref: (shape == Shape::OneOutcome).then(|| "0".repeat(32)),
                outcome: Outcome::Seizure {
                    item: SeizureItem::DrugClassA,
                    quantity: 1 + rng.below(5_000_000) as i64,
                    provisional: false,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Engine;

    #[test]
    fn the_stream_is_valid_deterministic_and_noisy() {
        let a = generate(2000, 7);
        assert_eq!(a, generate(2000, 7));
        assert_ne!(a, generate(2000, 8));
        let mut engine = Engine::new();
        let mut dup = 0;
        for e in &a {
            e.validate().unwrap();
            assert!((STARTS..ENDS).contains(&e.occurred_at));
            let applied = engine.apply(e.clone()).expect("a generated stream is never refused");
            dup += usize::from(applied == crate::domain::Applied::Duplicate);
        }
        let t = engine.totals(OPERATION).unwrap();
        assert!(dup > 100, "repeated deliveries: {dup}");
        assert!(t.joint.joint_outcomes > 50, "joint outcomes: {}", t.joint.joint_outcomes);
        assert!(a.iter().any(|e| e.withdrawn));
    }
}
