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

    /// What the force that sent the record should do, in words for its
    /// liaison: every reason has an answer, since the force believes the
    /// outcome counted until it is told otherwise.
    pub fn advice(self) -> &'static str {
        match self {
            Reason::Undecodable | Reason::UnknownSchema => {
                "The record could not be read: it was not written by a jointops agent of this version. Send it again with the agent."
            }
            Reason::Invalid => "A field is missing or out of range (see the detail). Correct the row in your export and run the agent again.",
            Reason::KeyMismatch | Reason::WrongPartition => {
                "The record was not published the way the agent publishes it. Send it again with the jointops agent, not another tool."
            }
            Reason::IdentityChanged => {
                "A new revision changed the operation, kind or joint reference of an outcome already reported. Withdraw the old record and report the corrected one under a new record id."
            }
            Reason::ConflictingRevision => {
                "The same revision was sent twice with different content. Send the change again as a new revision (the agent does this when the row changes)."
            }
            Reason::UnknownOperation => {
                "The operation code is not one the hub knows (a typo?). Correct the operation code in your export and run the agent again, or ask the coordinator to add the operation."
            }
            Reason::ForceNotInOperation => {
                "Your force is not listed as taking part in this operation. Ask the coordinator to add your force; the record is then replayed and counts."
            }
            Reason::OutsideWindow => {
                "The outcome's date and time fall outside the operation's window. Check occurred_at (date, time and time zone) in your export and run the agent again."
            }
            Reason::BadSignature | Reason::Unsigned => {
                "The record was not signed with a key the hub holds for your force. Check the agent's signing key with the hub's operators, then send it again."
            }
        }
    }

    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// The advice for a stored reason code (one from an older hub may be unknown).
pub fn advice_for(code: &str) -> &'static str {
    Reason::parse(code).map_or("Ask the hub's operators about this record.", Reason::advice)
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
