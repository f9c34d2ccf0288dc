//! The outcome event of contract §2, its identity (§3) and its validity rules.

use std::fmt;

/// Milliseconds since the Unix epoch (UTC), the wire's `timestamp-millis`.
pub type Millis = i64;

/// 2000-01-01T00:00:00Z: the earliest instant the contract accepts.
pub const EARLIEST_MS: Millis = 946_684_800_000;
/// 2100-01-01T00:00:00Z: the first instant the contract no longer accepts.
pub const LATEST_MS: Millis = 4_102_444_800_000;
/// How far `occurred_at` may lie after `reported_at` (clock skew between systems).
pub const MAX_FUTURE_SKEW_MS: Millis = 24 * 60 * 60 * 1000;

pub const MAX_CHARGE_COUNT: i32 = 1000;
pub const MAX_SEIZURE_QUANTITY: i64 = 1_000_000_000_000;
pub const MAX_ENGAGED_PEOPLE: i32 = 1_000_000;

/// One force's statement of one outcome, at one revision.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OutcomeEvent {
    pub event_id: String,
    pub revision: i32,
    pub force: String,
    pub operation: String,
    pub occurred_at: Millis,
    pub reported_at: Millis,
    pub withdrawn: bool,
    pub joint_ref: Option<String>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Arrest { offence_group: ArrestOffence },
    Charge { charges: Vec<ChargeCount> },
    Seizure { item: SeizureItem, quantity: i64, provisional: bool },
    LineClosure { closure: ClosureType },
    Safeguarding { referral: Referral },
    Engagement { people: i32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChargeCount {
    pub offence: ChargeOffence,
    pub count: i32,
}

/// Declares a wire enum: its symbols in schema order, so that `index()` is the
/// Avro enum index and `symbol()` the schema symbol.
macro_rules! wire_enum {
    ($name:ident { $($variant:ident = $symbol:literal),+ $(,)? }) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const SYMBOLS: &'static [&'static str] = &[$($symbol),+];

            pub fn symbol(self) -> &'static str {
                Self::SYMBOLS[self.index()]
            }
            pub fn index(self) -> usize {
                self as usize
            }
            pub fn from_index(index: usize) -> Option<Self> {
                Self::ALL.get(index).copied()
            }
            pub fn from_symbol(symbol: &str) -> Option<Self> {
                Self::SYMBOLS.iter().position(|s| *s == symbol).map(|i| Self::ALL[i])
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.symbol())
            }
        }
    };
}

wire_enum!(ArrestOffence {
    DrugSupply = "DRUG_SUPPLY",
    ModernSlavery = "MODERN_SLAVERY",
    Weapons = "WEAPONS",
    Violence = "VIOLENCE",
    Other = "OTHER",
});
wire_enum!(ChargeOffence {
    DrugSupplyClassA = "DRUG_SUPPLY_CLASS_A",
    DrugSupplyClassB = "DRUG_SUPPLY_CLASS_B",
    ModernSlavery = "MODERN_SLAVERY",
    Weapons = "WEAPONS",
    Other = "OTHER",
});
wire_enum!(SeizureItem {
    Firearm = "FIREARM",
    Weapon = "WEAPON",
    DrugClassA = "DRUG_CLASS_A",
    DrugClassB = "DRUG_CLASS_B",
    Cash = "CASH",
});
wire_enum!(ClosureType {
    HolderCharged = "HOLDER_CHARGED",
    NumberDeactivated = "NUMBER_DEACTIVATED",
    Other = "OTHER",
});
wire_enum!(Referral {
    None = "NONE",
    SupportProvider = "SUPPORT_PROVIDER",
    Nrm = "NRM",
});

/// The outcome kinds, in the order of the `outcome` union's branches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Arrest,
    Charge,
    Seizure,
    LineClosure,
    Safeguarding,
    Engagement,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Arrest, Kind::Charge, Kind::Seizure, Kind::LineClosure, Kind::Safeguarding, Kind::Engagement];

    /// The word used in identity keys and force exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Arrest => "arrest",
            Kind::Charge => "charge",
            Kind::Seizure => "seizure",
            Kind::LineClosure => "line_closure",
            Kind::Safeguarding => "safeguarding",
            Kind::Engagement => "engagement",
        }
    }

    pub fn parse(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == word)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Outcome {
    pub fn kind(&self) -> Kind {
        match self {
            Outcome::Arrest { .. } => Kind::Arrest,
            Outcome::Charge { .. } => Kind::Charge,
            Outcome::Seizure { .. } => Kind::Seizure,
            Outcome::LineClosure { .. } => Kind::LineClosure,
            Outcome::Safeguarding { .. } => Kind::Safeguarding,
            Outcome::Engagement { .. } => Kind::Engagement,
        }
    }
}

/// The identity key (contract §3): the Kafka key, and the key of one
/// real-world outcome in the counting engine.
/// Built by hand, not by `format!`: it runs once per event at both ends.
pub fn identity_key(operation: &str, kind: Kind, force: &str, event_id: &str, joint_ref: Option<&str>) -> String {
    let (middle, last) = match joint_ref {
        Some(r) => (kind.as_str(), r),
        None => (force, event_id),
    };
    let mut key = String::with_capacity(operation.len() + middle.len() + last.len() + 2);
    for (i, part) in [operation, middle, last].into_iter().enumerate() {
        if i > 0 {
            key.push('/');
        }
        key.push_str(part);
    }
    key
}

impl OutcomeEvent {
    pub fn kind(&self) -> Kind {
        self.outcome.kind()
    }

    pub fn identity_key(&self) -> String {
        identity_key(&self.operation, self.kind(), &self.force, &self.event_id, self.joint_ref.as_deref())
    }

    /// Checks every validity rule of contract §2. The error names the field and
    /// the offending value.
    pub fn validate(&self) -> Result<(), Invalid> {
        check_force(&self.force)?;
        check_operation(&self.operation)?;
        check_ref("event_id", &self.event_id)?;
        if let Some(r) = &self.joint_ref {
            check_ref("joint_ref", r)?;
        }
        if self.revision < 1 {
            return Err(Invalid::new("revision", format!("{} is below 1", self.revision)));
        }
        check_instant("occurred_at", self.occurred_at)?;
        check_instant("reported_at", self.reported_at)?;
        if self.occurred_at > self.reported_at.saturating_add(MAX_FUTURE_SKEW_MS) {
            return Err(Invalid::new(
                "occurred_at",
                format!(
                    "{} is more than 24 h after reported_at {}",
                    super::fmt_millis(self.occurred_at),
                    super::fmt_millis(self.reported_at)
                ),
            ));
        }
        self.outcome.validate()
    }
}

impl Outcome {
    pub fn validate(&self) -> Result<(), Invalid> {
        match self {
            Outcome::Charge { charges } => {
                if charges.is_empty() {
                    return Err(Invalid::new("charges", "is empty".to_string()));
                }
                for (i, c) in charges.iter().enumerate() {
                    if !(1..=MAX_CHARGE_COUNT).contains(&c.count) {
                        return Err(Invalid::new(
                            "charges",
                            format!("count {} for {} is not in 1..=1000", c.count, c.offence),
                        ));
                    }
                    if charges[..i].iter().any(|d| d.offence == c.offence) {
                        return Err(Invalid::new("charges", format!("offence {} is repeated", c.offence)));
                    }
                }
                Ok(())
            }
            Outcome::Seizure { quantity, .. } if !(1..=MAX_SEIZURE_QUANTITY).contains(quantity) => {
                Err(Invalid::new("quantity", format!("{quantity} is not in 1..=10^12")))
            }
            Outcome::Engagement { people } if !(1..=MAX_ENGAGED_PEOPLE).contains(people) => {
                Err(Invalid::new("people", format!("{people} is not in 1..=1000000")))
            }
            _ => Ok(()),
        }
    }
}

/// A broken validity rule: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: String) -> Self {
        Invalid { field, reason }
    }
}

fn check_instant(field: &'static str, ms: Millis) -> Result<(), Invalid> {
    if (EARLIEST_MS..LATEST_MS).contains(&ms) {
        Ok(())
    } else {
        Err(Invalid::new(field, format!("{} is outside the years 2000..2100", super::fmt_millis(ms))))
    }
}

/// `[A-Z0-9]{2,12}`
pub fn check_force(force: &str) -> Result<(), Invalid> {
    let ok = (2..=12).contains(&force.len()) && force.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    ok.then_some(()).ok_or_else(|| Invalid::new("force", format!("{force:?} is not [A-Z0-9]{{2,12}}")))
}

/// `[A-Za-z0-9._-]{1,64}`
pub fn check_operation(operation: &str) -> Result<(), Invalid> {
    let ok = (1..=64).contains(&operation.len())
        && operation.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(()).ok_or_else(|| Invalid::new("operation", format!("{operation:?} is not [A-Za-z0-9._-]{{1,64}}")))
}

/// `[A-Za-z0-9._:-]{1,128}`, the form of `event_id` and `joint_ref`.
pub fn check_ref(field: &'static str, value: &str) -> Result<(), Invalid> {
    let ok = (1..=128).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        return Ok(());
    }
    // Cut what is echoed back: the value may be long or hostile.
    let shown: String = value.chars().take(40).collect();
    let more = if value.chars().count() > 40 { "…" } else { "" };
    Err(Invalid::new(field, format!("{shown:?}{more} is not [A-Za-z0-9._:-]{{1,128}}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a refused event's times were printed as epoch milliseconds.
    #[test]
    fn refusals_print_times_as_rfc3339() {
        let mut e = OutcomeEvent {
            event_id: "E1".into(),
            revision: 1,
            force: "MPS".into(),
            operation: "OP".into(),
            occurred_at: 1_696_939_200_000 + MAX_FUTURE_SKEW_MS + 1,
            reported_at: 1_696_939_200_000,
            withdrawn: false,
            joint_ref: None,
            outcome: Outcome::Engagement { people: 1 },
        };
        let text = e.validate().unwrap_err().to_string();
        assert_eq!(
            text,
            "occurred_at: 2023-10-11T12:00:00.001Z is more than 24 h after reported_at 2023-10-10T12:00:00.000Z"
        );
        e.occurred_at = LATEST_MS;
        let text = e.validate().unwrap_err().to_string();
        assert_eq!(text, "occurred_at: 2100-01-01T00:00:00.000Z is outside the years 2000..2100");
    }
}
