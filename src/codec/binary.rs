//! A hand-written Avro binary codec for exactly `schemas/outcome-event.v1.avsc`.
//! It is several times faster than a generic `Value` round trip, and it never
//! allocates more than a small fixed bound: every length on the wire is
//! checked against a cap and against what remains before anything is
//! reserved.

use crate::domain::{
    ArrestOffence, ChargeCount, ChargeOffence, ClosureType, Outcome, OutcomeEvent, Referral, SeizureItem,
};

/// No string the contract allows is longer than 128 bytes; a longer one is
/// refused before it is copied.
pub const MAX_STRING_BYTES: i64 = 1024;
/// Five offences, none repeated: a longer charges array cannot be valid.
pub const MAX_CHARGES: usize = 64;

/// Why a datum could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatumError {
    #[error("datum ends early, reading {0}")]
    Truncated(&'static str),
    #[error("varint of {0} is longer than 10 bytes")]
    VarintTooLong(&'static str),
    #[error("{what} has a negative length {len}")]
    NegativeLength { what: &'static str, len: i64 },
    #[error("{what} claims {len} bytes, only {left} remain")]
    LengthPastEnd { what: &'static str, len: i64, left: usize },
    #[error("{0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("{what}: index {index} is out of range")]
    BadIndex { what: &'static str, index: i64 },
    #[error("{what}: {value} does not fit an int")]
    IntOverflow { what: &'static str, value: i64 },
    #[error("{0}: boolean byte is neither 0 nor 1")]
    BadBoolean(&'static str),
    #[error("{0} bytes follow the datum")]
    TrailingBytes(usize),
    #[error("{what} is {len} long, far above what the contract allows ({max} at most is read)")]
    TooLong { what: &'static str, len: i64, max: i64 },
}

pub fn encode(event: &OutcomeEvent, out: &mut Vec<u8>) {
    put_str(out, &event.event_id);
    put_long(out, i64::from(event.revision));
    put_str(out, &event.force);
    put_str(out, &event.operation);
    put_long(out, event.occurred_at);
    put_long(out, event.reported_at);
    out.push(u8::from(event.withdrawn));
    match &event.joint_ref {
        None => put_long(out, 0),
        Some(r) => {
            put_long(out, 1);
            put_str(out, r);
        }
    }
    let branch = event.outcome.kind() as i64;
    put_long(out, branch);
    match &event.outcome {
        Outcome::Arrest { offence_group } => put_long(out, offence_group.index() as i64),
        Outcome::Charge { charges } => {
            if !charges.is_empty() {
                put_long(out, charges.len() as i64);
                for c in charges {
                    put_long(out, c.offence.index() as i64);
                    put_long(out, i64::from(c.count));
                }
            }
            put_long(out, 0);
        }
        Outcome::Seizure { item, quantity, provisional } => {
            put_long(out, item.index() as i64);
            put_long(out, *quantity);
            out.push(u8::from(*provisional));
        }
        Outcome::LineClosure { closure } => put_long(out, closure.index() as i64),
        Outcome::Safeguarding { referral } => put_long(out, referral.index() as i64),
        Outcome::Engagement { people } => put_long(out, i64::from(*people)),
    }
}

pub fn decode(datum: &[u8]) -> Result<OutcomeEvent, DatumError> {
    let mut r = Reader { buf: datum };
    let event = OutcomeEvent {
        event_id: r.string("event_id")?,
        revision: r.int("revision")?,
        force: r.string("force")?,
        operation: r.string("operation")?,
        occurred_at: r.long("occurred_at")?,
        reported_at: r.long("reported_at")?,
        withdrawn: r.boolean("withdrawn")?,
        joint_ref: match r.long("joint_ref")? {
            0 => None,
            1 => Some(r.string("joint_ref")?),
            index => return Err(DatumError::BadIndex { what: "joint_ref union", index }),
        },
        outcome: r.outcome()?,
    };
    if !r.buf.is_empty() {
        return Err(DatumError::TrailingBytes(r.buf.len()));
    }
    Ok(event)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn long(&mut self, what: &'static str) -> Result<i64, DatumError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(DatumError::Truncated(what))?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(DatumError::VarintTooLong(what))
    }

    fn int(&mut self, what: &'static str) -> Result<i32, DatumError> {
        let value = self.long(what)?;
        i32::try_from(value).map_err(|_| DatumError::IntOverflow { what, value })
    }

    fn boolean(&mut self, what: &'static str) -> Result<bool, DatumError> {
        let (&b, rest) = self.buf.split_first().ok_or(DatumError::Truncated(what))?;
        self.buf = rest;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DatumError::BadBoolean(what)),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, DatumError> {
        let len = self.long(what)?;
        if len < 0 {
            return Err(DatumError::NegativeLength { what, len });
        }
        if len as u64 > self.buf.len() as u64 {
            return Err(DatumError::LengthPastEnd { what, len, left: self.buf.len() });
        }
        if len > MAX_STRING_BYTES {
            return Err(DatumError::TooLong { what, len, max: MAX_STRING_BYTES });
        }
        let (bytes, rest) = self.buf.split_at(len as usize);
        self.buf = rest;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DatumError::Utf8(what))
    }

    fn index<T>(&mut self, what: &'static str, from: impl Fn(usize) -> Option<T>) -> Result<T, DatumError> {
        let index = self.long(what)?;
        usize::try_from(index).ok().and_then(from).ok_or(DatumError::BadIndex { what, index })
    }

    fn outcome(&mut self) -> Result<Outcome, DatumError> {
        Ok(match self.long("outcome union")? {
            0 => Outcome::Arrest { offence_group: self.index("offence_group", ArrestOffence::from_index)? },
            1 => Outcome::Charge { charges: self.charges()? },
            2 => Outcome::Seizure {
                item: self.index("item", SeizureItem::from_index)?,
                quantity: self.long("quantity")?,
                provisional: self.boolean("provisional")?,
            },
            3 => Outcome::LineClosure { closure: self.index("closure", ClosureType::from_index)? },
            4 => Outcome::Safeguarding { referral: self.index("referral", Referral::from_index)? },
            5 => Outcome::Engagement { people: self.int("people")? },
            index => return Err(DatumError::BadIndex { what: "outcome union", index }),
        })
    }

    fn charges(&mut self) -> Result<Vec<ChargeCount>, DatumError> {
        let mut charges = Vec::new();
        loop {
            let mut count = self.long("charges block count")?;
            if count == 0 {
                return Ok(charges);
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes.
                count = count.checked_neg().ok_or(DatumError::NegativeLength { what: "charges block", len: count })?;
                let size = self.long("charges block size")?;
                if size < 0 {
                    return Err(DatumError::NegativeLength { what: "charges block size", len: size });
                }
            }
            // Each item takes at least two bytes: a count past that is a lie,
            // and must not make us reserve memory.
            if count as u64 > (self.buf.len() / 2) as u64 {
                return Err(DatumError::LengthPastEnd { what: "charges block", len: count, left: self.buf.len() });
            }
            if charges.len() as u64 + count as u64 > MAX_CHARGES as u64 {
                let len = charges.len() as i64 + count;
                return Err(DatumError::TooLong { what: "charges", len, max: MAX_CHARGES as i64 });
            }
            for _ in 0..count {
                charges.push(ChargeCount {
                    offence: self.index("offence", ChargeOffence::from_index)?,
                    count: self.int("count")?,
                });
            }
        }
    }
}

fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}
