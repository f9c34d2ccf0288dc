//! CSV exports as spreadsheets write them: `,`, `;` (Excel where the decimal mark is a comma) or tab
//! delimited, told from the header line unless configured; headings in any case; unknown columns ignored.

use super::{field_of, looks_like_a_name, unknown_name, CsvDelimiter, ExportError, Fields, Sink, FIELDS, REQUIRED};

const DELIMITERS: [(u8, &str); 3] = [(b',', "\",\""), (b';', "\";\""), (b'\t', "\"tab\"")];

/// The delimiter the header line uses most, outside quotes; `,` when it has none.
fn detect(header_line: &[u8]) -> u8 {
    let mut counts = [0usize; DELIMITERS.len()];
    let mut quoted = false;
    for &b in header_line {
        if b == b'"' {
            quoted = !quoted;
        } else if let Some(i) = DELIMITERS.iter().position(|(d, _)| *d == b).filter(|_| !quoted) {
            counts[i] += 1;
        }
    }
    let best = (0..counts.len()).fold(0, |best, i| if counts[i] > counts[best] { i } else { best });
    DELIMITERS[best].0
}

fn name_of(delimiter: u8) -> &'static str {
    DELIMITERS.iter().find(|(d, _)| *d == delimiter).map_or("?", |(_, n)| n)
}

/// A hint for a header read as one column although its line holds another delimiter: a `;` file read with `,`.
fn delimiter_hint(columns: usize, header_line: &[u8], delimiter: u8) -> String {
    let other = DELIMITERS.iter().find(|(d, _)| *d != delimiter && header_line.contains(d));
    match other {
        Some((_, name)) if columns == 1 => format!(
            "; the line was read as one column with the delimiter {} but holds {name}: set [exports] csv_delimiter = \
             {name} (or \"auto\")",
            name_of(delimiter)
        ),
        _ => String::new(),
    }
}

/// The field of each column, `None` for a column ignored. A repeated or missing field spoils every row.
fn csv_columns(
    header: &csv::StringRecord,
    header_line: &[u8],
    delimiter: u8,
    sink: &mut Sink,
) -> Result<Vec<Option<&'static str>>, String> {
    let hint = delimiter_hint(header.len(), header_line, delimiter);
    let fields: Vec<Option<&'static str>> = header.iter().map(field_of).collect();
    // A file without a header row has data on line 1: its cells (perhaps a
    // raw reference, which never leaves the force) must not be echoed into
    // errors and receipts.
    if fields.iter().all(Option::is_none) {
        return Err(format!(
            "line 1 is not a header row: none of its {} cells names a field; the first line must name the columns \
             (at least {}){hint}",
            header.len(),
            REQUIRED.join(", ")
        ));
    }
    let mut columns = Vec::with_capacity(fields.len());
    for (i, (name, field)) in header.iter().zip(fields).enumerate() {
        match field {
            Some(f) if columns.contains(&Some(f)) => return Err(format!("column {f} appears twice")),
            Some(f) => columns.push(Some(f)),
            None if sink.strict && looks_like_a_name(name.trim()) => return Err(unknown_name("column", name)),
            None if sink.strict => {
                return Err(format!("column {} is not a field name (the fields are {})", i + 1, FIELDS.join(", ")))
            }
            None => {
                sink.ignore(name);
                columns.push(None);
            }
        }
    }
    match REQUIRED.iter().find(|r| !columns.contains(&Some(**r))) {
        Some(missing) => Err(format!("the required column {missing} is missing{hint}")),
        None => Ok(columns),
    }
}

pub(super) fn read_csv(data: &[u8], delimiter: CsvDelimiter, sink: &mut Sink) -> Result<(), ExportError> {
    sink.names_are = "columns";
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let header_line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let delimiter = match delimiter {
        CsvDelimiter::Auto => detect(header_line),
        CsvDelimiter::Byte(b) => b,
    };
    // The csv crate gives a record's position before the blank lines it skips, so the bytes are needed to step
    // over them to the line the record really starts on.
    let start_line = |pos: Option<&csv::Position>| {
        pos.map_or(0, |p| {
            let rest = usize::try_from(p.byte()).ok().and_then(|at| data.get(at..)).unwrap_or_default();
            let blank = rest.iter().take_while(|b| matches!(b, b'\r' | b'\n')).filter(|b| **b == b'\n').count();
            p.line() + blank as u64
        })
    };
    let mut csv = csv::ReaderBuilder::new().has_headers(true).delimiter(delimiter).from_reader(data);
    let header = csv.headers().map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(source) => sink.io(source),
        csv::ErrorKind::Utf8 { .. } => ExportError::Header { file: sink.file.to_string(), reason: "not UTF-8".into() },
        other => ExportError::Header { file: sink.file.to_string(), reason: format!("{other:?}") },
    })?;
    let header = header.clone();
    let columns = csv_columns(&header, header_line, delimiter, sink)
        .map_err(|reason| ExportError::Header { file: sink.file.to_string(), reason })?;
    let mut record = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = start_line(record.position());
                let mut fields = Fields::default();
                for (name, value) in columns.iter().zip(record.iter()) {
                    if let Some(name) = name {
                        fields.insert(name, value);
                    }
                }
                sink.push(line, Ok(fields));
            }
            Err(e) => {
                let line = start_line(e.position());
                let reason = match e.into_kind() {
                    csv::ErrorKind::Io(source) => return Err(sink.io(source)),
                    csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8".to_string(),
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => format!(
                        "the row has {len} cells, the header {expected_len} (the delimiter is {})",
                        name_of(delimiter)
                    ),
                    other => format!("unreadable row: {other:?}"),
                };
                sink.push(line, Err(reason));
            }
        }
    }
}
