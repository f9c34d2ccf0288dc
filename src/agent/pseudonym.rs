//! Turns a force's raw joint reference into the wire `joint_ref` (contract §6), so raw identifiers never leave it.
//!
//! Every force's agent must produce the same pseudonym for the same line, action or exhibit, so the
//! normalisation here is exactly the contract's and nothing more: a "cleverer" rule in one agent would split a
//! joint outcome into two.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::Kind;

/// How many hex characters of the HMAC the wire keeps (128 bits).
pub const PSEUDONYM_LEN: usize = 32;

/// The contract's normal form of a raw reference: for a line closure the ASCII digits only, a leading `44`
/// (the UK country code) replaced by `0`; for every other kind the text without any Unicode white space, in
/// upper case.
pub fn normalise(kind: Kind, raw: &str) -> String {
    match kind {
        Kind::LineClosure => {
            let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
            match digits.strip_prefix("44") {
                Some(rest) => format!("0{rest}"),
                None => digits,
            }
        }
        _ => raw.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_uppercase(),
    }
}

/// Whether `raw` has nothing left once normalised, without building the normal form.
pub fn normalises_to_nothing(kind: Kind, raw: &str) -> bool {
    match kind {
        Kind::LineClosure => !raw.chars().any(|c| c.is_ascii_digit()),
        _ => raw.chars().all(char::is_whitespace),
    }
}

/// Why a line number's normal form will likely not meet the partner force's
/// (a UK number is `0` and 9 or 10 more digits; spreadsheets drop the `0`),
/// without echoing it; `None` when it looks like one. It is still published:
/// the contract leaves the number as the force holds it.
pub fn suspicious_line(raw: &str) -> Option<String> {
    let n = normalise(Kind::LineClosure, raw);
    let (digits, zero) = (n.len(), n.starts_with('0'));
    (digits < 10 || !zero).then(|| {
        let what = if zero {
            format!("has only {digits} digits")
        } else {
            format!("has {digits} digits and no leading 0 (a spreadsheet may have dropped it)")
        };
        format!(
            "joint_ref: the line_closure number {what}, so it will not meet a partner force's 0… number; \
             published as it is: correct the export if the number is wrong"
        )
    })
}

/// The wire `joint_ref`: lowercase hex of HMAC-SHA256(secret, kind + ":" + normalised), first 32 characters.
///
/// Errors never contain the raw value: it is the sensitive identifier this function exists to hide.
pub fn pseudonymise(secret: &[u8], kind: Kind, raw: &str) -> Result<String, String> {
    Pseudonymiser::new(secret)?.pseudonym(kind, raw)
}

/// One operation's keyed HMAC, set up once and cloned for each reference: setting up the key costs two
/// SHA-256 blocks, as much again as a short reference, so redoing it per row would double the work.
#[derive(Clone)]
pub struct Pseudonymiser {
    keyed: Hmac<Sha256>,
}

impl Pseudonymiser {
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        // An empty secret would make pseudonyms computable by anyone who can guess the raw value.
        if secret.is_empty() {
            return Err("the operation's pseudonymisation secret is empty".to_string());
        }
        let keyed = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| format!("HMAC key: {e}"))?;
        Ok(Pseudonymiser { keyed })
    }

    /// As [`pseudonymise`], with this operation's secret.
    pub fn pseudonym(&self, kind: Kind, raw: &str) -> Result<String, String> {
        let normalised = normalise(kind, raw);
        if normalised.is_empty() {
            let what = if kind == Kind::LineClosure { "no digits" } else { "only white space" };
            return Err(format!(
                "joint_ref: a {} value of {} characters has {what}, so it cannot be pseudonymised",
                kind,
                raw.chars().count()
            ));
        }
        let mut mac = self.keyed.clone();
        mac.update(kind.as_str().as_bytes());
        mac.update(b":");
        mac.update(normalised.as_bytes());
        Ok(hex::encode(&mac.finalize().into_bytes()[..PSEUDONYM_LEN / 2]))
    }
}

/// What identifies a secret without revealing it: HMAC-SHA256(secret, a
/// fixed label), 16 hex characters. Two agents with the same secret show the
/// same fingerprint, so forces can compare theirs.
pub fn fingerprint(secret: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(b"jointops-secret-fingerprint-v1");
    let mut hex = hex::encode(mac.finalize().into_bytes());
    hex.truncate(16);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::check_ref;

    const SECRET: &[u8] = b"demo-secret";

    fn pseudo(kind: Kind, raw: &str) -> String {
        pseudonymise(SECRET, kind, raw).expect(raw)
    }

    #[test]
    fn pinned_vector() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b'demo-secret',b'line_closure:07700900123',
        //             hashlib.sha256).hexdigest()[:32])"
        assert_eq!(pseudo(Kind::LineClosure, "07700 900123"), "32d2e917ef24b637617d8c38eee36b62");
        // Same tool, b'charge:JA-2023-0141'.
        assert_eq!(pseudo(Kind::Charge, "ja-2023-0141"), "b4a71fe003e8927ab1b872e092ed18ca");
    }

    #[test]
    fn nothing_left_once_normalised_is_told_without_normalising() {
        let raws = ["", "  ", "\t\u{a0}", "-", "()", "44", "+", "０", "x", " JA 1 ", "07700 900123"];
        for kind in [Kind::LineClosure, Kind::Charge] {
            for raw in raws {
                assert_eq!(normalises_to_nothing(kind, raw), normalise(kind, raw).is_empty(), "{kind} {raw:?}");
            }
        }
    }

    #[test]
    fn phone_numbers_in_any_layout_meet() {
        let want = pseudo(Kind::LineClosure, "07700900123");
        for raw in ["07700 900123", "+44 7700 900123", "447700900123", "(0)7700-900123", "tel: 07700.900.123"] {
            assert_eq!(normalise(Kind::LineClosure, raw), "07700900123", "{raw}");
            assert_eq!(pseudo(Kind::LineClosure, raw), want, "{raw}");
        }
        // The contract only replaces a leading 44: "+44 (0)7700 900123" keeps its trunk 0 and does NOT meet.
        assert_eq!(normalise(Kind::LineClosure, "+44 (0)7700 900123"), "007700900123");
        assert_eq!(normalise(Kind::LineClosure, "4444"), "044");
        // Only ASCII digits count: other scripts' digits are dropped, not translated.
        assert_eq!(normalise(Kind::LineClosure, "０7"), "7");
    }

    #[test]
    fn other_kinds_drop_white_space_and_upper_case() {
        assert_eq!(normalise(Kind::Seizure, " ja-2023-0141\t"), "JA-2023-0141");
        assert_eq!(normalise(Kind::Seizure, "Ja - 2023 -\u{a0}0141"), "JA-2023-0141");
        assert_eq!(pseudo(Kind::Seizure, "ja-2023-0141"), pseudo(Kind::Seizure, "JA -2023-0141"));
        // A hyphen is not white space: "JA 2023-0141" is another reference.
        assert_eq!(normalise(Kind::Seizure, "JA 2023-0141"), "JA2023-0141");
        assert_ne!(pseudo(Kind::Seizure, "ja-2023-0141"), pseudo(Kind::Seizure, "JA 2023-0141"));
        // Digits are not special outside line closures.
        assert_eq!(normalise(Kind::Arrest, "+44 1"), "+441");
        assert_eq!(normalise(Kind::Arrest, "straße"), "STRASSE");
    }

    /// Regression: a line number whose leading 0 a spreadsheet had stripped
    /// was published as if nothing were wrong, and never met the partner
    /// force's report of the same line.
    #[test]
    fn line_numbers_that_will_not_meet_a_partners_are_called_suspicious() {
        for raw in ["7700900123", "7700 900123", "770090012", "077009001", "12345", "33 1 23 45 67 89"] {
            let why = suspicious_line(raw).unwrap_or_else(|| panic!("{raw} is not flagged"));
            assert!(!why.contains(&raw.replace(' ', "")) && why.contains("will not meet"), "{raw}: {why}");
        }
        assert!(suspicious_line("7700900123").unwrap().contains("10 digits and no leading 0"));
        assert!(suspicious_line("077009001").unwrap().contains("only 9 digits"));
        for raw in ["07700 900123", "+44 7700 900123", "447700900123", "0207 946 0000", "01697 73000"] {
            assert_eq!(suspicious_line(raw), None, "{raw}");
        }
    }

    #[test]
    fn kind_and_secret_separate_pseudonyms() {
        let as_arrest = pseudo(Kind::Arrest, "X1");
        assert_ne!(as_arrest, pseudo(Kind::Charge, "X1"));
        assert_ne!(as_arrest, pseudonymise(b"other", Kind::Arrest, "X1").expect("pseudonym"));
    }

    #[test]
    fn output_is_a_valid_wire_joint_ref() {
        let p = pseudo(Kind::Engagement, "anything at all");
        assert_eq!(p.len(), PSEUDONYM_LEN);
        assert!(p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(check_ref("joint_ref", &p).is_ok());
    }

    #[test]
    fn empty_normal_forms_are_refused_without_echo() {
        let e = pseudonymise(SECRET, Kind::LineClosure, "no-digits-here").expect_err("no digits");
        assert!(e.contains("14 characters") && e.contains("no digits") && !e.contains("here"), "{e}");
        let e = pseudonymise(SECRET, Kind::Arrest, " \t\n").expect_err("blank");
        assert!(e.contains("3 characters") && e.contains("white space"), "{e}");
        assert!(pseudonymise(SECRET, Kind::Arrest, "").is_err());
        assert!(pseudonymise(b"", Kind::Arrest, "X1").expect_err("no secret").contains("secret is empty"));
    }
}
