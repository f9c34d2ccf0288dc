//! Reads a force's export (contract §6), JSON Lines or CSV, into checked rows, keeping every rejected row's reason.
//!
//! Both formats become the same list of named text values, so one set of field rules serves both. The raw
//! `joint_ref` is the force's sensitive identifier: no message here ever contains its value.

use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use crate::agent::pseudonym;
use crate::agent::units::{self, quoted};
use crate::domain::event::{check_operation, check_ref, EARLIEST_MS, LATEST_MS};
use crate::domain::{
    ArrestOffence, ChargeCount, ChargeOffence, ClosureType, Kind, Millis, Outcome, Referral, SeizureItem,
};

/// One accepted row of a force export, before pseudonymisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRow {
    /// 1-based line in the file where the row starts (in CSV the header is line 1).
    pub line: u64,
    pub record_id: String,
    pub operation: String,
    pub occurred_at: Millis,
    /// The raw shared reference, trimmed; `None` when absent or empty.
    pub joint_ref: Option<String>,
    pub withdrawn: bool,
    /// Its kind is the row's `kind`.
    pub outcome: Outcome,
}

/// A rejected row: where, and why (naming the field and its value, except a raw `joint_ref`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct RowError {
    pub file: String,
    pub line: u64,
    pub reason: String,
}

/// A problem with the whole file: nothing of it can be trusted.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{file}: {reason}")]
    Format { file: String, reason: String },
    #[error("{file}: cannot read: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: bad CSV header: {reason}")]
    Header { file: String, reason: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

impl Format {
    /// By extension (case-insensitive): `.jsonl`, `.ndjson`, `.json` are JSON Lines, `.csv` is CSV.
    pub fn of_path(path: &Path) -> Result<Format, String> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json") => Ok(Format::JsonLines),
            Some("csv") => Ok(Format::Csv),
            _ => Err(format!("{} is not a .jsonl, .ndjson, .json or .csv export", path.display())),
        }
    }
}

/// Reads a whole export; returns every accepted row and every rejected row (never stops at the first bad row).
/// An I/O error or an unreadable CSV header is an Err for the whole file.
pub fn read_export(path: &Path) -> Result<(Vec<ExportRow>, Vec<RowError>), ExportError> {
    let file = path.display().to_string();
    let format = Format::of_path(path).map_err(|reason| ExportError::Format { file: file.clone(), reason })?;
    let reader = std::fs::File::open(path).map_err(|source| ExportError::Io { file: file.clone(), source })?;
    read_export_from(reader, format, &file)
}

/// As [`read_export`], from any reader; `file_label` names the source in errors.
pub fn read_export_from(
    reader: impl Read,
    format: Format,
    file_label: &str,
) -> Result<(Vec<ExportRow>, Vec<RowError>), ExportError> {
    let mut sink = Sink { file: file_label, rows: Vec::new(), errors: Vec::new() };
    match format {
        Format::JsonLines => read_jsonl(reader, &mut sink)?,
        Format::Csv => read_csv(reader, &mut sink)?,
    }
    Ok((sink.rows, sink.errors))
}

struct Sink<'a> {
    file: &'a str,
    rows: Vec<ExportRow>,
    errors: Vec<RowError>,
}

impl Sink<'_> {
    fn push(&mut self, line: u64, row: Result<Fields, String>) {
        match row.and_then(|fields| parse_row(line, &fields)) {
            Ok(row) => self.rows.push(row),
            Err(reason) => self.errors.push(RowError { file: self.file.to_string(), line, reason }),
        }
    }
    fn io(&self, source: std::io::Error) -> ExportError {
        ExportError::Io { file: self.file.to_string(), source }
    }
}

/// The fields of contract §6 (the force's field names, not the wire's).
#[rustfmt::skip]
const FIELDS: [&str; 15] = [
    "record_id", "kind", "operation", "occurred_at", "joint_ref", "withdrawn", "offence_group", "charges", "item",
    "quantity", "unit", "provisional", "closure", "referral", "people",
];
/// The kind a field belongs to; `None` for the fields of every kind.
fn owner(field: &str) -> Option<Kind> {
    match field {
        "offence_group" => Some(Kind::Arrest),
        "charges" => Some(Kind::Charge),
        "item" | "quantity" | "unit" | "provisional" => Some(Kind::Seizure),
        "closure" => Some(Kind::LineClosure),
        "referral" => Some(Kind::Safeguarding),
        "people" => Some(Kind::Engagement),
        _ => None,
    }
}
const REQUIRED: [&str; 4] = ["record_id", "kind", "operation", "occurred_at"];

/// A known field name, or why the name is refused: a misspelt field would otherwise lose its value silently.
fn known_field(name: &str) -> Result<&'static str, String> {
    let known = FIELDS.iter().find(|known| **known == name).copied();
    known.ok_or_else(|| format!("unknown field {} (the fields are {})", quoted(name), FIELDS.join(", ")))
}

/// A row's present values, trimmed; empty values count as absent (an empty CSV cell, `""` or `null`).
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn insert(&mut self, name: &'static str, value: &str) {
        let value = value.trim();
        if !value.is_empty() {
            self.0.push((name, value.to_string()));
        }
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
    fn required(&self, name: &str, kind: Option<Kind>) -> Result<&str, String> {
        self.get(name).ok_or_else(|| match kind {
            Some(kind) => format!("{name}: missing, required for kind {kind}"),
            None => format!("{name}: missing"),
        })
    }
    fn boolean(&self, name: &str) -> Result<bool, String> {
        match self.get(name) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(format!("{name}: {} is not true or false", quoted(v))),
        }
    }
    fn symbol<T>(&self, name: &str, parse: fn(&str) -> Option<T>, symbols: &[&str]) -> Result<Option<T>, String> {
        let check =
            |v: &str| parse(v).ok_or_else(|| format!("{name}: {} is not one of {}", quoted(v), symbols.join(", ")));
        self.get(name).map(check).transpose()
    }
}

fn parse_row(line: u64, f: &Fields) -> Result<ExportRow, String> {
    let record_id = f.required("record_id", None)?;
    check_ref("record_id", record_id).map_err(|e| e.to_string())?;
    let kind_text = f.required("kind", None)?;
    let kind = Kind::parse(kind_text).ok_or_else(|| {
        format!("kind: {} is not one of {}", quoted(kind_text), Kind::ALL.map(Kind::as_str).join(", "))
    })?;
    let operation = f.required("operation", None)?;
    check_operation(operation).map_err(|e| e.to_string())?;
    let occurred_at = parse_instant(f.required("occurred_at", None)?)?;
    let withdrawn = f.boolean("withdrawn")?;
    for (name, value) in &f.0 {
        if let Some(owner) = owner(name) {
            if owner != kind {
                return Err(format!("{name}: {} is not a field of kind {kind} (only of {owner})", quoted(value)));
            }
        }
    }
    let outcome = match kind {
        Kind::Arrest => Outcome::Arrest {
            offence_group: f
                .symbol("offence_group", ArrestOffence::from_symbol, ArrestOffence::SYMBOLS)?
                .ok_or_else(|| "offence_group: missing, required for kind arrest".to_string())?,
        },
        Kind::Charge => Outcome::Charge { charges: parse_charges(f.required("charges", Some(kind))?)? },
        Kind::Seizure => {
            let item = f
                .symbol("item", SeizureItem::from_symbol, SeizureItem::SYMBOLS)?
                .ok_or_else(|| "item: missing, required for kind seizure".to_string())?;
            let unit = f.get("unit");
            units::check_unit(item, unit).map_err(|e| format!("unit: {e}"))?;
            let quantity = f.required("quantity", Some(kind))?;
            let quantity = units::to_wire_quantity(item, quantity, unit).map_err(|e| format!("quantity: {e}"))?;
            Outcome::Seizure { item, quantity, provisional: f.boolean("provisional")? }
        }
        Kind::LineClosure => Outcome::LineClosure {
            closure: f.symbol("closure", ClosureType::from_symbol, ClosureType::SYMBOLS)?.unwrap_or(ClosureType::Other),
        },
        Kind::Safeguarding => Outcome::Safeguarding {
            referral: f.symbol("referral", Referral::from_symbol, Referral::SYMBOLS)?.unwrap_or(Referral::None),
        },
        Kind::Engagement => {
            let people = f.required("people", Some(kind))?;
            let fits = parse_whole(people).filter(|n| (1..=1_000_000).contains(n));
            let people = fits.ok_or_else(|| format!("people: {} is not an integer in 1..=1000000", quoted(people)))?;
            Outcome::Engagement { people }
        }
    };
    outcome.validate().map_err(|e| e.to_string())?;
    let joint_ref = f.get("joint_ref").map(str::to_string);
    if let Some(raw) = &joint_ref {
        // Caught here, with its line, rather than when pseudonymising; the length stands in for the value.
        if pseudonym::normalise(kind, raw).is_empty() {
            let length = raw.chars().count();
            return Err(format!("joint_ref: a value of {length} characters has nothing left once normalised"));
        }
    }
    let (record_id, operation) = (record_id.to_string(), operation.to_string());
    Ok(ExportRow { line, record_id, operation, occurred_at, joint_ref, withdrawn, outcome })
}

/// Plain decimal digits (no sign, no spaces), small enough for an `i32`.
fn parse_whole(text: &str) -> Option<i32> {
    let plain = !text.is_empty() && text.len() <= 9 && text.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| text.parse().ok()).flatten()
}

fn parse_instant(text: &str) -> Result<Millis, String> {
    let instant = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|_| format!("occurred_at: {} is not RFC 3339 (e.g. 2023-10-10T12:00:00+01:00)", quoted(text)))?;
    let ms = instant.timestamp_millis();
    if !(EARLIEST_MS..LATEST_MS).contains(&ms) {
        return Err(format!("occurred_at: {} is outside the years 2000..2100", quoted(text)));
    }
    Ok(ms)
}

/// `OFFENCE:COUNT` pairs separated by `;`, white space around items and their parts tolerated.
fn parse_charges(text: &str) -> Result<Vec<ChargeCount>, String> {
    let mut charges: Vec<ChargeCount> = Vec::new();
    for item in text.split(';') {
        let (offence, count) = item.split_once(':').ok_or_else(|| {
            format!("charges: {} is not OFFENCE:COUNT pairs separated by ';' (e.g. WEAPONS:1;OTHER:2)", quoted(text))
        })?;
        let offence = offence.trim();
        let offence = ChargeOffence::from_symbol(offence).ok_or_else(|| {
            format!("charges: offence {} is not one of {}", quoted(offence), ChargeOffence::SYMBOLS.join(", "))
        })?;
        let count_text = count.trim();
        let count = parse_whole(count_text).filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
            format!("charges: count {} for {offence} is not an integer in 1..=1000", quoted(count_text))
        })?;
        if charges.iter().any(|c| c.offence == offence) {
            return Err(format!("charges: offence {offence} is repeated in {}", quoted(text)));
        }
        charges.push(ChargeCount { offence, count });
    }
    Ok(charges)
}

/// A JSON object's members in file order, duplicates kept so that they can be refused.
struct JsonObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = JsonObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, Value>()? {
                    members.push(member);
                }
                Ok(JsonObject(members))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

fn json_fields(text: &str) -> Result<Fields, String> {
    // serde_json's messages may quote the line's text (perhaps a raw joint_ref): only its position is kept.
    let JsonObject(members) = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => "the line is not a JSON object".to_string(),
        _ => format!("the line is not valid JSON (column {})", e.column()),
    })?;
    let mut fields = Fields::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in members {
        let name = known_field(&name)?;
        if seen.contains(&name) {
            return Err(format!("{name}: appears twice"));
        }
        seen.push(name);
        match value {
            Value::Null => {}
            Value::String(s) => fields.insert(name, &s),
            // With arbitrary_precision this is the number's exact text: 1.25 stays 1.25.
            Value::Number(n) => fields.insert(name, &n.to_string()),
            Value::Bool(b) => fields.insert(name, if b { "true" } else { "false" }),
            Value::Array(_) | Value::Object(_) => {
                return Err(format!("{name}: must be a string, number or boolean, not an array or object"))
            }
        }
    }
    Ok(fields)
}

fn read_jsonl(reader: impl Read, sink: &mut Sink) -> Result<(), ExportError> {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut line = 0u64;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(|e| sink.io(e))? == 0 {
            return Ok(());
        }
        line += 1;
        let Ok(text) = std::str::from_utf8(&buf) else {
            sink.push(line, Err("the line is not UTF-8".to_string()));
            continue;
        };
        let text = if line == 1 { text.trim_start_matches('\u{feff}') } else { text };
        if !text.trim().is_empty() {
            sink.push(line, json_fields(text));
        }
    }
}

/// The header's columns as known field names: an unknown, repeated or missing column spoils every row.
fn csv_columns(header: &csv::StringRecord) -> Result<Vec<&'static str>, String> {
    if header.is_empty() {
        return Err("the file is empty (no header row)".to_string());
    }
    // A file without a header row has data on line 1: its cells (perhaps a
    // raw reference, which never leaves the force) must not be echoed into
    // errors and receipts.
    if header.iter().all(|name| known_field(name.trim()).is_err()) {
        return Err(format!(
            "line 1 is not a header row: none of its {} cells names a field; the first line must name the columns \
             (at least {})",
            header.len(),
            REQUIRED.join(", ")
        ));
    }
    let mut columns = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let looks_like_a_name = |n: &str| n.len() <= 40 && n.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
        let name = match known_field(name.trim()) {
            Ok(name) => name,
            Err(e) if looks_like_a_name(name.trim()) => return Err(e.replacen("unknown field", "unknown column", 1)),
            Err(_) => {
                return Err(format!("column {} is not a field name (the fields are {})", i + 1, FIELDS.join(", ")))
            }
        };
        if columns.contains(&name) {
            return Err(format!("column {name} appears twice"));
        }
        columns.push(name);
    }
    match REQUIRED.iter().find(|r| !columns.contains(r)) {
        Some(missing) => Err(format!("the required column {missing} is missing")),
        None => Ok(columns),
    }
}

fn read_csv(mut reader: impl Read, sink: &mut Sink) -> Result<(), ExportError> {
    // Held whole: the csv crate gives a record's position before the blank lines it skips, so the bytes are needed
    // to step over them to the line the record really starts on.
    let mut data = Vec::new();
    reader.read_to_end(&mut data).map_err(|e| sink.io(e))?;
    let start_line = |pos: Option<&csv::Position>| {
        pos.map_or(0, |p| {
            let rest = usize::try_from(p.byte()).ok().and_then(|at| data.get(at..)).unwrap_or_default();
            let blank = rest.iter().take_while(|b| matches!(b, b'\r' | b'\n')).filter(|b| **b == b'\n').count();
            p.line() + blank as u64
        })
    };
    let mut csv = csv::ReaderBuilder::new().has_headers(true).from_reader(data.as_slice());
    let header = csv.headers().map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(source) => sink.io(source),
        csv::ErrorKind::Utf8 { .. } => ExportError::Header { file: sink.file.to_string(), reason: "not UTF-8".into() },
        other => ExportError::Header { file: sink.file.to_string(), reason: format!("{other:?}") },
    })?;
    let columns = csv_columns(header).map_err(|reason| ExportError::Header { file: sink.file.to_string(), reason })?;
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = start_line(record.position());
                let mut fields = Fields::default();
                columns.iter().zip(record.iter()).for_each(|(name, value)| fields.insert(name, value));
                sink.push(line, Ok(fields));
            }
            Err(e) => {
                let line = start_line(e.position());
                let reason = match e.into_kind() {
                    csv::ErrorKind::Io(source) => return Err(sink.io(source)),
                    csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8".to_string(),
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        format!("the row has {len} cells, the header {expected_len}")
                    }
                    other => format!("unreadable row: {other:?}"),
                };
                sink.push(line, Err(reason));
            }
        }
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
