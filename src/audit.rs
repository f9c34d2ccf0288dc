//! The hub's records for people and tools: the access log and the token
//! list as a table, JSON or CSV. What callers sent is stored as sent; here
//! it is shown safely: control characters escaped in the table (no terminal
//! escapes from a justification header), and CSV cells that a spreadsheet
//! would run as a formula (`=`, `+`, `-`, `@`, tab, CR) made inert.

use std::fmt::Write;

use crate::access::Grant;
use crate::domain::fmt_millis;
use crate::report::Format;
use crate::store::Access;

/// `text` with control characters (C0, DEL, C1) written as `\u{…}` escapes
/// and backslashes doubled, so that what is shown cannot be mistaken for an
/// escape either.
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A CSV cell a spreadsheet will not evaluate: one that would start a
/// formula gets a leading apostrophe (OWASP's advice for CSV injection).
pub fn inert_cell(text: &str) -> String {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}"),
        _ => text.to_string(),
    }
}

/// CSV of `rows` under `header`, every cell made inert ([`inert_cell`]).
pub fn csv_of<const N: usize>(header: [&str; N], rows: impl Iterator<Item = [String; N]>) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r.iter().map(|c| inert_cell(c)))?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// The access log for people (table) or tools (JSON/CSV).
pub fn access_log(rows: &[Access], format: Format) -> anyhow::Result<String> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(rows)? + "\n",
        Format::Csv => csv_of(
            ["seq", "at", "token_id", "role", "method", "path", "operation", "status", "justification", "figures_at"],
            rows.iter().map(|a| {
                [
                    a.seq.to_string(),
                    fmt_millis(a.at),
                    opt(&a.token_id),
                    opt(&a.role),
                    a.method.clone(),
                    a.path.clone(),
                    opt(&a.operation),
                    a.status.to_string(),
                    opt(&a.justification),
                    opt(&a.figures_at),
                ]
            }),
        )?,
        Format::Table => {
            let mut out = String::new();
            for a in rows {
                writeln!(
                    out,
                    "{:>6}  {}  {:<12} {:<14} {} {:<48} {}  {}{}",
                    a.seq,
                    fmt_millis(a.at),
                    escape_controls(a.token_id.as_deref().unwrap_or("(no token)")),
                    escape_controls(a.role.as_deref().unwrap_or("-")),
                    a.status,
                    escape_controls(&a.path),
                    escape_controls(&a.method),
                    a.justification.as_deref().map_or(String::new(), |j| format!("reason: {}", escape_controls(j))),
                    a.figures_at.as_deref().map_or(String::new(), |f| format!("  figures: {f}")),
                )?;
            }
            writeln!(out, "{} entries", rows.len())?;
            out
        }
    })
}

/// Issued tokens (never the tokens themselves).
pub fn tokens(grants: &[Grant], format: Format) -> anyhow::Result<String> {
    let ops = |g: &Grant| g.operations.as_ref().map(|o| o.join(","));
    let revoked = |g: &Grant| g.revoked_at.map(fmt_millis);
    Ok(match format {
        Format::Json => {
            let list: Vec<_> = grants
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "id": g.id,
                        "role": g.role.to_string(),
                        "operations": g.operations,
                        "label": g.label,
                        "created_at": fmt_millis(g.created_at),
                        "revoked_at": revoked(g),
                    })
                })
                .collect();
            serde_json::to_string_pretty(&list)? + "\n"
        }
        Format::Csv => csv_of(
            ["id", "role", "operations", "label", "created_at", "revoked_at"],
            grants.iter().map(|g| {
                [
                    g.id.clone(),
                    g.role.to_string(),
                    ops(g).unwrap_or_default(),
                    g.label.clone(),
                    fmt_millis(g.created_at),
                    revoked(g).unwrap_or_default(),
                ]
            }),
        )?,
        Format::Table => {
            let mut out = String::new();
            for g in grants {
                let state = revoked(g).map_or("active".to_string(), |t| format!("revoked {t}"));
                let ops = ops(g).unwrap_or_else(|| "all operations".into());
                writeln!(out, "{}  {:<14} {:<28} {:<24} {}", g.id, g.role, ops, state, escape_controls(&g.label))?;
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Access {
        Access {
            seq: 1,
            at: 0,
            token_id: None,
            role: None,
            method: "GET".into(),
            path: "/api/v1/x\u{1b}[2J".into(),
            operation: None,
            status: 401,
            justification: Some("=HYPERLINK(\"http://evil\")\r\n\u{1b}]0;pwned\u{7}".into()),
            figures_at: None,
        }
    }

    /// Regression: `audit` printed stored text raw, so a justification
    /// header could carry terminal escapes or a spreadsheet formula.
    #[test]
    fn audit_shows_control_characters_escaped_and_formulas_inert() {
        let table = access_log(&[hostile()], Format::Table).unwrap();
        assert!(!table.lines().next().unwrap().chars().any(|c| c.is_control()), "{table:?}");
        assert!(table.contains(r"/api/v1/x\u{1b}[2J"), "{table}");
        let csv = access_log(&[hostile()], Format::Csv).unwrap();
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let row = r.records().next().unwrap().unwrap();
        assert!(row[8].starts_with("'=HYPERLINK"), "{row:?}");
        let json = access_log(&[hostile()], Format::Json).unwrap();
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back[0]["justification"], hostile().justification.unwrap(), "JSON keeps the bytes");
        assert_eq!(inert_cell("-1"), "'-1");
        assert_eq!(inert_cell("+x"), "'+x");
        assert_eq!(inert_cell("@SUM"), "'@SUM");
        assert_eq!(inert_cell("ok"), "ok");
    }
}
