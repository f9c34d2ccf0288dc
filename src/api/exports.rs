//! CSV as downloaded from the dashboard: every row carries the operation,
//! the moment the figures are for and when the file was made, so a file
//! found later on a shared drive still says what it is; the spreadsheet
//! variant adds kg and £ columns (exact decimals) beside the exact units.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::domain::{fmt_millis, Totals};

/// Which columns: the contract's integer units only, or also as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Units {
    Exact,
    Published,
}

impl Units {
    pub fn parse(text: Option<&str>) -> Result<Units, String> {
        match text {
            None | Some("exact") => Ok(Units::Exact),
            Some("published") => Ok(Units::Published),
            Some(other) => Err(format!("units {other:?} is not one of: exact, published")),
        }
    }
}

/// The columns that say what a file is: `(name, value)`, first on every row.
pub struct Stamp(pub Vec<(&'static str, String)>);

impl Stamp {
    pub fn figures(operation: &str, as_of: i64, generated_at: i64) -> Stamp {
        Stamp(vec![
            ("operation", operation.to_string()),
            ("as_of", fmt_millis(as_of)),
            ("generated_at", fmt_millis(generated_at)),
        ])
    }
}

/// The published forms: kg for drugs (mg ÷ 10⁶), £ for cash (pence ÷ 100).
const PUBLISHED: [(&str, &str, u32); 3] = [
    ("drugs_class_a_kg", "drugs_class_a_mg", 6),
    ("drugs_class_b_kg", "drugs_class_b_mg", 6),
    ("cash_gbp", "cash_pence", 2),
];

/// `n / 10^places` written out exactly, trailing zeros kept to the places
/// (pence) or trimmed (kg): 7600000 mg → "7.6", 21456800 p → "214568.00".
pub fn decimal(n: i64, places: u32) -> String {
    let scale = 10u64.pow(places);
    let (whole, frac) = (n.unsigned_abs() / scale, n.unsigned_abs() % scale);
    let sign = if n < 0 { "-" } else { "" };
    let mut frac = format!("{frac:0w$}", w = places as usize);
    if places > 2 {
        let kept = frac.trim_end_matches('0').len();
        frac.truncate(kept);
    }
    if frac.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac}")
    }
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::Writer::from_writer(Vec::new())
}

fn finish(w: csv::Writer<Vec<u8>>) -> String {
    String::from_utf8(w.into_inner().expect("a Vec takes every write")).expect("CSV of UTF-8 text is UTF-8")
}

/// One row per key (a force, a day, a scope): `stamp…, key, totals…[, published…]`.
pub fn rows<'a>(stamp: &Stamp, key: &str, units: Units, rows: impl Iterator<Item = (String, &'a Totals)>) -> String {
    let mut w = writer();
    let mut head: Vec<&str> = stamp.0.iter().map(|(n, _)| *n).collect();
    head.push(key);
    head.extend(Totals::NAMES);
    if units == Units::Published {
        head.extend(PUBLISHED.iter().map(|(n, _, _)| *n));
    }
    w.write_record(&head).expect("in memory");
    for (k, row) in rows {
        let mut record: Vec<String> = stamp.0.iter().map(|(_, v)| v.clone()).collect();
        record.push(k);
        record.extend(row.iter().map(|(_, v)| v.to_string()));
        if units == Units::Published {
            record.extend(PUBLISHED.iter().map(|(_, from, places)| decimal(row.get(from).unwrap_or(0), *places)));
        }
        w.write_record(&record).expect("in memory");
    }
    finish(w)
}

/// One row per total, a column for the joint figure and one per force;
/// the published forms as rows of their own after the exact ones.
pub fn by_total<'a>(stamp: &Stamp, units: Units, joint: &Totals, forces: &[(&'a str, &'a Totals)]) -> String {
    let mut w = writer();
    let mut head: Vec<&str> = stamp.0.iter().map(|(n, _)| *n).collect();
    head.extend(["total", "joint"]);
    head.extend(forces.iter().map(|(f, _)| *f));
    w.write_record(&head).expect("in memory");
    let mut line = |name: &str, value: &dyn Fn(&Totals) -> String| {
        let mut record: Vec<String> = stamp.0.iter().map(|(_, v)| v.clone()).collect();
        record.extend([name.to_string(), value(joint)]);
        record.extend(forces.iter().map(|(_, r)| value(r)));
        w.write_record(&record).expect("in memory");
    };
    for name in Totals::NAMES {
        line(name, &|t| t.get(name).unwrap_or(0).to_string());
    }
    if units == Units::Published {
        for (name, from, places) in PUBLISHED {
            line(name, &|t| decimal(t.get(from).unwrap_or(0), places));
        }
    }
    finish(w)
}

/// A CSV download: the body, with a file name that says what it holds.
pub fn download(body: String, name: &str) -> Response {
    let mut res = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    let disposition = format!("attachment; filename=\"{}\"", file_name(name));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// A file name from parts like `CLIW-2023-10`, `forces`, an instant: only
/// letters, digits, `-`, `_` and `.`, so that no header or path trick fits.
pub fn file_name(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    format!("{safe}.csv")
}

/// 2023-10-16T09:00:00.000Z → "20231016T090000Z", for file names.
pub fn compact(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y%m%dT%H%M%SZ").to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_units_are_exact_decimals() {
        assert_eq!(decimal(7_600_000, 6), "7.6");
        assert_eq!(decimal(9_300_001, 6), "9.300001");
        assert_eq!(decimal(2_000_000, 6), "2");
        assert_eq!(decimal(21_456_800, 2), "214568.00");
        assert_eq!(decimal(-5, 2), "-0.05");
        assert_eq!(decimal(-1_250_000, 6), "-1.25");
        assert_eq!(decimal(i64::MIN, 2), "-92233720368547758.08");
    }

    #[test]
    fn every_row_says_what_the_file_is_and_published_columns_follow_the_exact_ones() {
        let t = Totals { drugs_class_a_mg: 1_250_000, cash_pence: 105, ..Totals::default() };
        let stamp = Stamp::figures("OP", 0, 1000);
        let csv = rows(&stamp, "force", Units::Published, [("MPS".to_string(), &t)].into_iter());
        let mut lines = csv.lines();
        let head = lines.next().unwrap();
        assert!(head.starts_with("operation,as_of,generated_at,force,arrests,"), "{head}");
        assert!(head.ends_with(",provisional_seizures,drugs_class_a_kg,drugs_class_b_kg,cash_gbp"), "{head}");
        let row = lines.next().unwrap();
        assert!(row.starts_with("OP,1970-01-01T00:00:00.000Z,1970-01-01T00:00:01.000Z,MPS,0,"), "{row}");
        assert!(row.ends_with(",1.25,0,1.05"), "{row}");
        let by = by_total(&stamp, Units::Published, &t, &[("MPS", &t)]);
        assert!(by.lines().any(|l| l.ends_with(",cash_gbp,1.05,1.05")), "{by}");
        assert!(!by_total(&stamp, Units::Exact, &t, &[]).contains("cash_gbp"));
    }

    #[test]
    fn file_names_hold_no_quotes_or_paths() {
        assert_eq!(
            file_name("CLIW-2023-10-forces-as-of-20231016T090000Z"),
            "CLIW-2023-10-forces-as-of-20231016T090000Z.csv"
        );
        assert_eq!(file_name("a\"b/../c\r\n"), "a-b-..-c--.csv");
    }
}
