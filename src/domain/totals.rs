//! The totals of contract §5: exact integers, named as in every report and export.

use super::event::{ChargeOffence, Outcome, Referral, SeizureItem};

macro_rules! totals {
    ($($field:ident),+ $(,)?) => {
        /// One row of totals (joint, or one force's view). Every figure is an
        /// exact integer; nothing on the counting path is floating point.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct Totals { $(pub $field: i64),+ }

        impl Totals {
            /// The contract's names, in the contract's order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];

            /// `(name, value)` pairs in the contract's order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, i64)> + '_ {
                [$((stringify!($field), self.$field)),+].into_iter()
            }

            pub fn get(&self, name: &str) -> Option<i64> {
                match name { $(stringify!($field) => Some(self.$field),)+ _ => None }
            }

            pub fn get_mut(&mut self, name: &str) -> Option<&mut i64> {
                match name { $(stringify!($field) => Some(&mut self.$field),)+ _ => None }
            }

            /// `self + sign × other` field by field, or the name of the first
            /// figure that would overflow: a total is never silently wrong.
            pub fn checked_add_scaled(&self, other: &Totals, sign: i64) -> Result<Totals, &'static str> {
                Ok(Totals { $($field: other.$field
                    .checked_mul(sign)
                    .and_then(|d| self.$field.checked_add(d))
                    .ok_or(stringify!($field))?),+ })
            }

            /// Adds `sign × other` where the caller knows it cannot overflow
            /// (the difference of two non-negative rows).
            pub fn add_scaled(&mut self, other: &Totals, sign: i64) {
                *self = self.checked_add_scaled(other, sign).expect("the difference of two totals fits");
            }

            pub fn is_zero(&self) -> bool {
                *self == Totals::default()
            }
        }
    };
}

totals!(
    arrests,
    people_charged,
    charges,
    charges_drug_trafficking,
    charges_class_a,
    charges_class_b,
    charges_modern_slavery,
    charges_weapons,
    charges_other,
    lines_closed,
    people_safeguarded,
    referrals_support,
    referrals_nrm,
    people_engaged,
    firearms,
    weapons,
    drugs_class_a_mg,
    drugs_class_b_mg,
    cash_pence,
    joint_outcomes,
    provisional_seizures,
);

impl Totals {
    /// What one outcome counts towards (contract §2's table). `joint_outcomes`
    /// is not a measure of the outcome: the engine adds it for the group.
    pub fn measures(outcome: &Outcome) -> Totals {
        let mut t = Totals::default();
        match outcome {
            Outcome::Arrest { .. } => t.arrests = 1,
            Outcome::Charge { charges } => {
                t.people_charged = 1;
                for c in charges {
                    let n = i64::from(c.count);
                    t.charges += n;
                    match c.offence {
                        ChargeOffence::DrugSupplyClassA => {
                            t.charges_class_a += n;
                            t.charges_drug_trafficking += n;
                        }
                        ChargeOffence::DrugSupplyClassB => {
                            t.charges_class_b += n;
                            t.charges_drug_trafficking += n;
                        }
                        ChargeOffence::ModernSlavery => t.charges_modern_slavery += n,
                        ChargeOffence::Weapons => t.charges_weapons += n,
                        ChargeOffence::Other => t.charges_other += n,
                    }
                }
            }
            Outcome::Seizure { item, quantity, provisional } => {
                let slot = match item {
                    SeizureItem::Firearm => &mut t.firearms,
                    SeizureItem::Weapon => &mut t.weapons,
                    SeizureItem::DrugClassA => &mut t.drugs_class_a_mg,
                    SeizureItem::DrugClassB => &mut t.drugs_class_b_mg,
                    SeizureItem::Cash => &mut t.cash_pence,
                };
                *slot = *quantity;
                t.provisional_seizures = i64::from(*provisional);
            }
            Outcome::LineClosure { .. } => t.lines_closed = 1,
            Outcome::Safeguarding { referral } => {
                t.people_safeguarded = 1;
                match referral {
                    Referral::None => {}
                    Referral::SupportProvider => t.referrals_support = 1,
                    Referral::Nrm => t.referrals_nrm = 1,
                }
            }
            Outcome::Engagement { people } => t.people_engaged = i64::from(*people),
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::ChargeCount;

    #[test]
    fn charge_measures_split_by_offence_and_sum_drug_trafficking() {
        let t = Totals::measures(&Outcome::Charge {
            charges: vec![
                ChargeCount { offence: ChargeOffence::DrugSupplyClassA, count: 2 },
                ChargeCount { offence: ChargeOffence::DrugSupplyClassB, count: 3 },
                ChargeCount { offence: ChargeOffence::Weapons, count: 1 },
            ],
        });
        assert_eq!((t.people_charged, t.charges), (1, 6));
        assert_eq!((t.charges_class_a, t.charges_class_b, t.charges_drug_trafficking), (2, 3, 5));
        assert_eq!((t.charges_weapons, t.charges_other, t.charges_modern_slavery), (1, 0, 0));
    }

    #[test]
    fn seizure_quantity_goes_to_its_item_and_provisional_is_counted() {
        let t = Totals::measures(&Outcome::Seizure { item: SeizureItem::Cash, quantity: 12_345, provisional: true });
        assert_eq!((t.cash_pence, t.provisional_seizures, t.drugs_class_a_mg), (12_345, 1, 0));
    }

    #[test]
    fn safeguarding_referral_counts_once_in_its_column() {
        let t = Totals::measures(&Outcome::Safeguarding { referral: Referral::Nrm });
        assert_eq!((t.people_safeguarded, t.referrals_nrm, t.referrals_support), (1, 1, 0));
        let t = Totals::measures(&Outcome::Safeguarding { referral: Referral::None });
        assert_eq!((t.people_safeguarded, t.referrals_nrm, t.referrals_support), (1, 0, 0));
    }

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(Totals::NAMES.len(), 21);
        assert_eq!(Totals::NAMES[0], "arrests");
        assert_eq!(Totals::NAMES[20], "provisional_seizures");
        let mut t = Totals::default();
        *t.get_mut("cash_pence").unwrap() = 7;
        assert_eq!(t.get("cash_pence"), Some(7));
        assert_eq!(t.get("no_such_total"), None);
    }
}
