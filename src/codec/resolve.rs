//! Reading an older writer version: apache-avro decodes the datum and resolves
//! it against the current schema; the resolved `Value` becomes a domain event.

use apache_avro::types::Value;
use apache_avro::Schema;

use crate::domain::{
    ArrestOffence, ChargeCount, ChargeOffence, ClosureType, Outcome, OutcomeEvent, Referral, SeizureItem,
};

pub fn decode(writer: &Schema, reader: &Schema, datum: &[u8]) -> Result<OutcomeEvent, String> {
    let mut cursor = std::io::Cursor::new(datum);
    let value = apache_avro::from_avro_datum(writer, &mut cursor, Some(reader)).map_err(|e| e.to_string())?;
    let left = datum.len() as u64 - cursor.position();
    if left > 0 {
        return Err(format!("{left} bytes follow the datum"));
    }
    event(value)
}

fn event(value: Value) -> Result<OutcomeEvent, String> {
    let mut f = Fields::of(value, "OutcomeEvent")?;
    Ok(OutcomeEvent {
        event_id: f.string("event_id")?,
        revision: f.int("revision")?,
        force: f.string("force")?,
        operation: f.string("operation")?,
        occurred_at: f.long("occurred_at")?,
        reported_at: f.long("reported_at")?,
        withdrawn: f.boolean("withdrawn")?,
        joint_ref: match f.take("joint_ref")? {
            Value::Union(_, inner) => match *inner {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => return Err(format!("joint_ref: unexpected {other:?}")),
            },
            other => return Err(format!("joint_ref: unexpected {other:?}")),
        },
        outcome: outcome(f.take("outcome")?)?,
    })
}

fn outcome(value: Value) -> Result<Outcome, String> {
    let Value::Union(branch, inner) = value else { return Err("outcome is not a union".into()) };
    let mut f = Fields::of(*inner, "outcome")?;
    Ok(match branch {
        0 => Outcome::Arrest { offence_group: f.symbol("offence_group", ArrestOffence::from_symbol)? },
        1 => {
            let Value::Array(items) = f.take("charges")? else { return Err("charges is not an array".into()) };
            let charges = items
                .into_iter()
                .map(|item| {
                    let mut c = Fields::of(item, "ChargeCount")?;
                    Ok(ChargeCount {
                        offence: c.symbol("offence", ChargeOffence::from_symbol)?,
                        count: c.int("count")?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Outcome::Charge { charges }
        }
        2 => Outcome::Seizure {
            item: f.symbol("item", SeizureItem::from_symbol)?,
            quantity: f.long("quantity")?,
            provisional: f.boolean("provisional")?,
        },
        3 => Outcome::LineClosure { closure: f.symbol("closure", ClosureType::from_symbol)? },
        4 => Outcome::Safeguarding { referral: f.symbol("referral", Referral::from_symbol)? },
        5 => Outcome::Engagement { people: f.int("people")? },
        b => return Err(format!("outcome branch {b} is unknown")),
    })
}

/// The fields of a resolved record, taken by name.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn of(value: Value, what: &str) -> Result<Fields, String> {
        match value {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(format!("{what} is not a record: {other:?}")),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, String> {
        let i = self.0.iter().position(|(n, _)| n == name).ok_or_else(|| format!("field {name} is missing"))?;
        Ok(self.0.swap_remove(i).1)
    }

    fn string(&mut self, name: &str) -> Result<String, String> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            other => Err(format!("{name}: expected a string, got {other:?}")),
        }
    }

    fn int(&mut self, name: &str) -> Result<i32, String> {
        match self.take(name)? {
            Value::Int(i) => Ok(i),
            other => Err(format!("{name}: expected an int, got {other:?}")),
        }
    }

    fn long(&mut self, name: &str) -> Result<i64, String> {
        match self.take(name)? {
            Value::Long(i) | Value::TimestampMillis(i) => Ok(i),
            Value::Int(i) => Ok(i64::from(i)),
            other => Err(format!("{name}: expected a long, got {other:?}")),
        }
    }

    fn boolean(&mut self, name: &str) -> Result<bool, String> {
        match self.take(name)? {
            Value::Boolean(b) => Ok(b),
            other => Err(format!("{name}: expected a boolean, got {other:?}")),
        }
    }

    fn symbol<T>(&mut self, name: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
        match self.take(name)? {
            Value::Enum(_, s) => parse(&s).ok_or_else(|| format!("{name}: unknown symbol {s}")),
            other => Err(format!("{name}: expected an enum, got {other:?}")),
        }
    }
}
