//! Reads a force's export (contract §6), JSON Lines, a JSON array or CSV, into checked rows, keeping every
//! rejected row's reason.
//!
//! Exports come from spreadsheets and ETL jobs, so names are matched as people write them (any case, spaces
//! around or inside), CSV may use `;` or tabs, and unknown columns are ignored with one warning naming them
//! (`strict_columns` refuses them). Every format becomes the same list of named text values, so one set of field
//! rules serves all. The raw `joint_ref` is the force's sensitive identifier: no message here ever contains its
//! value, nor any cell that does not look like a column name.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use crate::agent::pseudonym;
use crate::agent::units::{self, quoted};
pub use crate::config::{CsvDelimiter, ExportSettings};
use crate::domain::event::{check_operation, check_ref, EARLIEST_MS, LATEST_MS};
use crate::domain::{
    ArrestOffence, ChargeCount, ChargeOffence, ClosureType, Kind, Millis, Outcome, Referral, SeizureItem,
};

#[path = "export_csv.rs"]
mod csv_file;
#[path = "export_json.rs"]
mod json_file;

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

/// What a readable export gave.
#[derive(Debug, Default)]
pub struct Export {
    pub rows: Vec<ExportRow>,
    pub errors: Vec<RowError>,
    /// What the file's sender should know although no row was refused: unknown columns ignored, no rows at all.
    pub notes: Vec<String>,
}

/// The note of a file without a single row (empty, blank lines only, a CSV header alone, `[]`).
pub const NO_ROWS: &str = "no rows";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON Lines, or one JSON array of objects (told apart by the first character).
    Json,
    Csv,
}

impl Format {
    /// By extension (case-insensitive): `.jsonl`, `.ndjson`, `.json` are JSON, `.csv` and `.tsv` are CSV.
    pub fn of_path(path: &Path) -> Result<Format, String> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json") => Ok(Format::Json),
            Some("csv" | "tsv") => Ok(Format::Csv),
            _ => Err(format!("{} is not a .jsonl, .ndjson, .json, .csv or .tsv export", path.display())),
        }
    }
}

/// Reads a whole export; returns every accepted row and every rejected row (never stops at the first bad row).
/// An I/O error or an unreadable CSV header is an Err for the whole file.
pub fn read_export(path: &Path, settings: &ExportSettings) -> Result<Export, ExportError> {
    let file = path.display().to_string();
    let format = Format::of_path(path).map_err(|reason| ExportError::Format { file: file.clone(), reason })?;
    let reader = std::fs::File::open(path).map_err(|source| ExportError::Io { file: file.clone(), source })?;
    read_export_with(reader, format, &file, settings)
}

/// As [`read_export_with`] with the default settings, rows and rejections only.
pub fn read_export_from(
    reader: impl Read,
    format: Format,
    file_label: &str,
) -> Result<(Vec<ExportRow>, Vec<RowError>), ExportError> {
    read_export_with(reader, format, file_label, &ExportSettings::default()).map(|e| (e.rows, e.errors))
}

/// As [`read_export`], from any reader; `file_label` names the source in errors.
pub fn read_export_with(
    mut reader: impl Read,
    format: Format,
    file_label: &str,
    settings: &ExportSettings,
) -> Result<Export, ExportError> {
    let mut sink = Sink::new(file_label, settings.strict_columns);
    // Held whole: a JSON array is told from JSON Lines by its first character, and the csv crate needs the bytes
    // to find the line a record starts on.
    let mut data = Vec::new();
    reader.read_to_end(&mut data).map_err(|e| sink.io(e))?;
    let data = data.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&data);
    match format {
        Format::Json => json_file::read_json(data, &mut sink)?,
        Format::Csv => {
            // A row is at most a line: one allocation, not a doubling copy of every row read so far.
            sink.rows.reserve(data.iter().filter(|&&b| b == b'\n').count());
            csv_file::read_csv(data, settings.csv_delimiter, &mut sink)?
        }
    }
    Ok(sink.finish())
}

struct Sink<'a> {
    file: &'a str,
    strict: bool,
    rows: Vec<ExportRow>,
    errors: Vec<RowError>,
    /// Unknown names that look like names, in first-seen order: these may be shown.
    unknown: Vec<String>,
    /// How many unknown names were not shown because they do not look like names (perhaps data).
    unshown: u64,
    /// "columns" or "fields", for the note.
    names_are: &'static str,
}

impl<'a> Sink<'a> {
    fn new(file: &'a str, strict: bool) -> Self {
        Sink { file, strict, rows: Vec::new(), errors: Vec::new(), unknown: Vec::new(), unshown: 0, names_are: "" }
    }
    fn push(&mut self, line: u64, row: Result<Fields, String>) {
        match row.and_then(|fields| parse_row(line, fields)) {
            Ok(row) => self.rows.push(row),
            Err(reason) => self.errors.push(RowError { file: self.file.to_string(), line, reason }),
        }
    }
    fn io(&self, source: std::io::Error) -> ExportError {
        ExportError::Io { file: self.file.to_string(), source }
    }
    /// Remembers an ignored name for the file's one warning.
    fn ignore(&mut self, name: &str) {
        let name = name.trim();
        if !looks_like_a_name(name) {
            self.unshown += 1;
        } else if !self.unknown.iter().any(|n| n == name) {
            self.unknown.push(name.to_string());
        }
    }
    fn finish(self) -> Export {
        let mut notes = Vec::new();
        if !self.unknown.is_empty() || self.unshown > 0 {
            let mut named: Vec<String> = self.unknown.iter().map(|n| quoted(n)).collect();
            if self.unshown > 0 {
                named.push(format!("{} whose names are not shown as they look like data", self.unshown));
            }
            let note = format!(
                "unknown {} ignored: {} (the fields are {}; set [exports] strict_columns = true to refuse such files)",
                self.names_are,
                named.join(", "),
                FIELDS.join(", ")
            );
            tracing::warn!(file = %self.file, unknown = %named.join(", "), "Unknown {} ignored.", self.names_are);
            notes.push(note);
        }
        if self.rows.is_empty() && self.errors.is_empty() {
            notes.push(NO_ROWS.to_string());
        }
        Export { rows: self.rows, errors: self.errors, notes }
    }
}

/// Whether an unknown name may be shown: a spreadsheet heading, not a value (a phone number, a reference).
fn looks_like_a_name(name: &str) -> bool {
    let plain = name.bytes().all(|b| b.is_ascii_alphabetic() || matches!(b, b'_' | b' ' | b'-'));
    name.len() <= 40 && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && plain
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

/// The field a column or member name stands for, matched as people write names: any case, spaces around, and
/// spaces or hyphens inside for `_` (`" Record ID "` is `record_id`).
fn field_of(name: &str) -> Option<&'static str> {
    if let Some(exact) = FIELDS.iter().find(|f| **f == name) {
        return Some(exact);
    }
    let words: Vec<&str> = name.split(|c: char| c.is_whitespace() || c == '-').filter(|w| !w.is_empty()).collect();
    let normal = words.join("_").to_ascii_lowercase();
    FIELDS.iter().find(|f| **f == normal).copied()
}

/// Why an unknown name is refused under `strict_columns`, showing it only if it looks like a name.
fn unknown_name(what: &str, name: &str) -> String {
    let name = name.trim();
    let shown = if looks_like_a_name(name) { format!(" {}", quoted(name)) } else { String::new() };
    format!("unknown {what}{shown} (the fields are {}; strict_columns is set)", FIELDS.join(", "))
}

/// `text` in the case the symbols are written in; borrowed when it already is.
fn in_case(text: &str, upper: bool) -> Cow<'_, str> {
    let wrong = |b: &u8| if upper { b.is_ascii_lowercase() } else { b.is_ascii_uppercase() };
    match (text.as_bytes().iter().any(wrong), upper) {
        (false, _) => Cow::Borrowed(text),
        (true, true) => Cow::Owned(text.to_ascii_uppercase()),
        (true, false) => Cow::Owned(text.to_ascii_lowercase()),
    }
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
    /// Moves a value out, for the row to keep: no copy per row.
    fn take(&mut self, name: &str) -> Option<String> {
        self.0.iter_mut().find(|(n, _)| *n == name).map(|(_, v)| std::mem::take(v))
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
        let check = |v: &str| {
            parse(&in_case(v, true))
                .ok_or_else(|| format!("{name}: {} is not one of {}", quoted(v), symbols.join(", ")))
        };
        self.get(name).map(check).transpose()
    }
}

fn parse_row(line: u64, mut f: Fields) -> Result<ExportRow, String> {
    let record_id = f.required("record_id", None)?;
    check_ref("record_id", record_id).map_err(|e| e.to_string())?;
    let kind_text = f.required("kind", None)?;
    let kind = Kind::parse(&in_case(kind_text, false)).ok_or_else(|| {
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
    if let Some(raw) = f.get("joint_ref") {
        // Caught here, with its line, rather than when pseudonymising; the length stands in for the value.
        if pseudonym::normalises_to_nothing(kind, raw) {
            let length = raw.chars().count();
            return Err(format!("joint_ref: a value of {length} characters has nothing left once normalised"));
        }
    }
    let (record_id, operation) = (f.take("record_id").unwrap_or_default(), f.take("operation").unwrap_or_default());
    let joint_ref = f.take("joint_ref");
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
        let offence = ChargeOffence::from_symbol(&in_case(offence, true)).ok_or_else(|| {
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

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
