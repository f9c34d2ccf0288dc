//! Who may see what: coordinators see everything of the operations they are
//! given; a force's liaison sees the joint totals and only their own force's
//! row. Pure: the store keeps tokens (hashed) and the access log.

use std::fmt;

use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    /// A force's liaison officer.
    Force(String),
}

impl Role {
    pub fn parse(text: &str) -> Result<Role, String> {
        match text.split_once(':') {
            None if text == "coordinator" => Ok(Role::Coordinator),
            Some(("force", code)) => {
                crate::domain::event::check_force(code).map_err(|e| e.to_string())?;
                Ok(Role::Force(code.to_string()))
            }
            _ => Err(format!("role {text:?} is neither coordinator nor force:CODE")),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Coordinator => f.write_str("coordinator"),
            Role::Force(code) => write!(f, "force:{code}"),
        }
    }
}

/// An issued token as the hub knows it (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub role: Role,
    /// `None`: every operation.
    pub operations: Option<Vec<String>>,
    pub label: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Grant {
    /// Whether the token may read anything of `operation` (whose taking-part
    /// forces are `forces`, `None` for any force).
    pub fn may_see_operation(&self, operation: &str, forces: Option<&std::collections::BTreeSet<String>>) -> bool {
        let granted = self.operations.as_ref().is_none_or(|ops| ops.iter().any(|o| o == operation));
        let takes_part = match &self.role {
            Role::Coordinator => true,
            Role::Force(code) => forces.is_none_or(|f| f.contains(code)),
        };
        granted && takes_part
    }

    /// Whether a per-force row may be shown.
    pub fn may_see_force(&self, force: &str) -> bool {
        match &self.role {
            Role::Coordinator => true,
            Role::Force(code) => code == force,
        }
    }

    /// Dead letters are the whole hub's: coordinators only.
    pub fn may_see_dead_letters(&self) -> bool {
        self.role == Role::Coordinator
    }
}

/// A new random token (`jo_` + 64 hex digits) and its hash.
pub fn new_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let token = format!("jo_{}", hex::encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

/// Tokens are 256 random bits, so a plain SHA-256 is a safe way to keep them:
/// there is nothing to guess that a slow hash would protect.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The public id of a token: the start of its hash.
pub fn token_id(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role, ops: Option<&[&str]>) -> Grant {
        Grant {
            id: "x".into(),
            role,
            operations: ops.map(|o| o.iter().map(|s| s.to_string()).collect()),
            label: String::new(),
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn coordinators_see_their_operations_and_every_force() {
        let g = grant(Role::Coordinator, Some(&["OP-1"]));
        assert!(g.may_see_operation("OP-1", None));
        assert!(!g.may_see_operation("OP-2", None));
        assert!(g.may_see_force("KENT") && g.may_see_dead_letters());
        assert!(grant(Role::Coordinator, None).may_see_operation("ANY", None));
    }

    #[test]
    fn a_liaison_sees_only_their_force_and_operations_it_takes_part_in() {
        let g = grant(Role::Force("KENT".into()), None);
        let forces: std::collections::BTreeSet<String> = ["MPS".to_string(), "KENT".to_string()].into();
        let others: std::collections::BTreeSet<String> = ["MPS".to_string()].into();
        assert!(g.may_see_operation("OP-1", Some(&forces)));
        assert!(!g.may_see_operation("OP-2", Some(&others)));
        assert!(g.may_see_force("KENT") && !g.may_see_force("MPS"));
        assert!(!g.may_see_dead_letters());
    }

    #[test]
    fn roles_parse_and_tokens_are_random_and_hashed() {
        assert_eq!(Role::parse("force:MPS"), Ok(Role::Force("MPS".into())));
        assert_eq!(Role::parse("coordinator"), Ok(Role::Coordinator));
        assert!(Role::parse("force:mps").is_err() && Role::parse("admin").is_err());
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 67);
        assert_eq!(hash_token(&a), ha);
        assert_eq!(token_id(&ha).len(), 12);
    }
}
