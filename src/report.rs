//! Totals → table / JSON / CSV, with the contract's names (§5).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::domain::{OperationTotals, Totals};
use crate::store::DeadLetter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

fn totals_json(t: &Totals) -> Value {
    Value::Object(t.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<Map<_, _>>())
}

/// `{"operation", "totals", "forces", "dead_letters"}`.
pub fn to_json(operation: &str, t: &OperationTotals, dead_letters: &BTreeMap<String, i64>) -> Value {
    json!({
        "operation": operation,
        "totals": totals_json(&t.joint),
        "forces": t.forces.iter().map(|(f, r)| (f.clone(), totals_json(r))).collect::<Map<_, _>>(),
        "dead_letters": dead_letters,
    })
}

/// One row per total, one column for the joint figure and one per force.
pub fn to_csv(t: &OperationTotals) -> String {
    let mut out = String::from("total,joint");
    for f in t.forces.keys() {
        write!(out, ",{f}").expect("string write");
    }
    out.push('\n');
    for name in Totals::NAMES {
        write!(out, "{name},{}", t.joint.get(name).unwrap_or_default()).expect("string write");
        for row in t.forces.values() {
            write!(out, ",{}", row.get(name).unwrap_or_default()).expect("string write");
        }
        out.push('\n');
    }
    out
}

/// One row per key (a force, a day): `key_name,arrests,…`.
pub fn rows_csv<'a>(key_name: &str, rows: impl Iterator<Item = (String, &'a Totals)>) -> String {
    let mut out = String::from(key_name);
    for name in Totals::NAMES {
        write!(out, ",{name}").expect("string write");
    }
    out.push('\n');
    for (key, row) in rows {
        out.push_str(&key);
        for (_, v) in row.iter() {
            write!(out, ",{v}").expect("string write");
        }
        out.push('\n');
    }
    out
}

pub fn to_table(operation: &str, t: &OperationTotals, dead_letters: &BTreeMap<String, i64>) -> String {
    let mut header = vec!["total".to_string(), "JOINT".to_string()];
    header.extend(t.forces.keys().cloned());
    let mut rows = vec![header];
    for name in Totals::NAMES {
        let mut row = vec![name.to_string(), group_digits(t.joint.get(name).unwrap_or_default())];
        row.extend(t.forces.values().map(|r| group_digits(r.get(name).unwrap_or_default())));
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = format!("Operation {operation}: joint totals and per-force view (a force is credited with every outcome it took part in)\n\n");
    for (i, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                write!(out, "{cell:<w$}", w = widths[c]).expect("string write");
            } else {
                write!(out, "  {cell:>w$}", w = widths[c]).expect("string write");
            }
        }
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out.push_str("\nDead-lettered records (whole hub):");
    if dead_letters.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        for (reason, n) in dead_letters {
            writeln!(out, "  {reason:<24} {n}").expect("string write");
        }
    }
    out
}

/// Dead letters written as they are read (`dlq list`): the log can be far
/// larger than memory should hold. Never the original bytes: they may be
/// anything a sender wrote.
pub enum DeadLetterWriter<W: std::io::Write> {
    Table { out: W, rows: u64 },
    Json { out: W, rows: u64 },
    Csv(Box<csv::Writer<W>>),
}

impl<W: std::io::Write> DeadLetterWriter<W> {
    pub fn new(format: Format, mut out: W) -> anyhow::Result<Self> {
        Ok(match format {
            Format::Table => {
                let (source, reason, force, id, replayed) = ("source", "reason", "force", "event_id", "replayed");
                writeln!(out, "{source:<24} {reason:<24} {force:<8} {id:<32} {replayed:<8} detail")?;
                DeadLetterWriter::Table { out, rows: 0 }
            }
            Format::Json => {
                out.write_all(b"[")?;
                DeadLetterWriter::Json { out, rows: 0 }
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(["topic", "partition", "offset", "reason", "force", "event_id", "replayed", "detail"])?;
                DeadLetterWriter::Csv(Box::new(w))
            }
        })
    }

    pub fn row(&mut self, d: &DeadLetter) -> anyhow::Result<()> {
        match self {
            DeadLetterWriter::Table { out, rows } => {
                *rows += 1;
                let source = format!("{}/{}", d.partition, d.offset);
                let detail: String = d.detail.chars().take(100).collect();
                writeln!(
                    out,
                    "{source:<24} {:<24} {:<8} {:<32} {:<8} {}",
                    d.reason,
                    d.force.as_deref().unwrap_or("-"),
                    d.event_id.as_deref().unwrap_or("-"),
                    if d.replayed { "yes" } else { "no" },
                    detail.escape_debug(),
                )?;
            }
            DeadLetterWriter::Json { out, rows } => {
                out.write_all(if *rows == 0 { b"\n  " } else { b",\n  " })?;
                *rows += 1;
                let record = json!({
                    "topic": d.topic, "partition": d.partition, "offset": d.offset, "reason": d.reason,
                    "force": d.force, "event_id": d.event_id, "detail": d.detail, "replayed": d.replayed,
                });
                serde_json::to_writer(&mut *out, &record)?;
            }
            DeadLetterWriter::Csv(w) => w.write_record([
                d.topic.as_str(),
                &d.partition.to_string(),
                &d.offset.to_string(),
                &d.reason,
                d.force.as_deref().unwrap_or(""),
                d.event_id.as_deref().unwrap_or(""),
                if d.replayed { "true" } else { "false" },
                &d.detail,
            ])?,
        }
        Ok(())
    }

    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            DeadLetterWriter::Table { mut out, rows } => writeln!(out, "{rows} dead letters")?,
            DeadLetterWriter::Json { mut out, rows } => out.write_all(if rows == 0 { b"]\n" } else { b"\n]\n" })?,
            DeadLetterWriter::Csv(mut w) => w.flush()?,
        }
        Ok(())
    }
}

/// 21456800 → "21,456,800": figures meant for people.
fn group_digits(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(offset: i64, detail: &str) -> DeadLetter {
        DeadLetter {
            topic: "t".into(),
            partition: 1,
            offset,
            reason: "invalid".into(),
            detail: detail.into(),
            force: Some("KENT".into()),
            event_id: None,
            operation: None,
            at: None,
            original: crate::store::Original::default(),
            sent: true,
            replayed: false,
        }
    }

    fn written(format: Format, rows: &[DeadLetter]) -> String {
        let mut out = Vec::new();
        let mut w = DeadLetterWriter::new(format, &mut out).unwrap();
        for d in rows {
            w.row(d).unwrap();
        }
        w.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dead_letters_are_written_row_by_row_in_each_format() {
        let rows = [dead(1, "bad\nline"), dead(2, "=1+1")];
        let json: Value = serde_json::from_str(&written(Format::Json, &rows)).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 2);
        assert_eq!(json[1]["offset"], 2);
        assert_eq!(serde_json::from_str::<Value>(&written(Format::Json, &[])).unwrap(), json!([]));
        let csv = written(Format::Csv, &rows);
        assert_eq!(csv.lines().next(), Some("topic,partition,offset,reason,force,event_id,replayed,detail"));
        let table = written(Format::Table, &rows);
        assert!(table.contains("bad\\nline"), "control characters escaped: {table}");
        assert!(table.ends_with("2 dead letters\n"));
    }

    fn sample() -> OperationTotals {
        let mut t = OperationTotals::default();
        t.joint.cash_pence = 21_456_800;
        t.forces.insert("KENT".into(), Totals { cash_pence: 100, ..Totals::default() });
        t
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = to_json("OP", &sample(), &BTreeMap::from([("invalid".to_string(), 2)]));
        assert_eq!(v["operation"], "OP");
        assert_eq!(v["totals"]["cash_pence"], 21_456_800);
        assert_eq!(v["totals"].as_object().unwrap().len(), 21);
        assert_eq!(v["forces"]["KENT"]["cash_pence"], 100);
        assert_eq!(v["dead_letters"]["invalid"], 2);
    }

    #[test]
    fn csv_and_table_carry_every_total() {
        let csv = to_csv(&sample());
        assert!(csv.starts_with("total,joint,KENT\n"));
        assert!(csv.contains("\ncash_pence,21456800,100\n"));
        assert_eq!(csv.lines().count(), 22);
        let table = to_table("OP", &sample(), &BTreeMap::new());
        assert!(table.contains("21,456,800"));
        assert_eq!(group_digits(-1234), "-1,234");
        assert_eq!(group_digits(999), "999");
    }
}
