//! The dead-letter reason codes of contract §3.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Undecodable,
    UnknownSchema,
    Invalid,
    KeyMismatch,
    IdentityChanged,
    ConflictingRevision,
    UnknownOperation,
    ForceNotInOperation,
    OutsideWindow,
    WrongPartition,
    BadSignature,
    Unsigned,
}

impl Reason {
    pub const ALL: [Reason; 12] = [
        Reason::Undecodable,
        Reason::UnknownSchema,
        Reason::Invalid,
        Reason::KeyMismatch,
        Reason::IdentityChanged,
        Reason::ConflictingRevision,
        Reason::UnknownOperation,
        Reason::ForceNotInOperation,
        Reason::OutsideWindow,
        Reason::WrongPartition,
        Reason::BadSignature,
        Reason::Unsigned,
    ];

    /// The code carried in the `jointops-error` header.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Undecodable => "undecodable",
            Reason::UnknownSchema => "unknown-schema",
            Reason::Invalid => "invalid",
            Reason::KeyMismatch => "key-mismatch",
            Reason::IdentityChanged => "identity-changed",
            Reason::ConflictingRevision => "conflicting-revision",
            Reason::UnknownOperation => "unknown-operation",
            Reason::ForceNotInOperation => "force-not-in-operation",
            Reason::OutsideWindow => "outside-window",
            Reason::WrongPartition => "wrong-partition",
            Reason::BadSignature => "bad-signature",
            Reason::Unsigned => "unsigned",
        }
    }

    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
