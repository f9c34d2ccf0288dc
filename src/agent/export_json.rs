//! JSON exports: JSON Lines, or one array of objects (what many tools write for "export as JSON").

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::{field_of, unknown_name, ExportError, Fields, Sink};

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

/// One object's fields; `what` is "line" or "element", for messages.
fn json_fields(text: &[u8], what: &str, sink: &mut Sink) -> Result<Fields, String> {
    let Ok(text) = std::str::from_utf8(text) else { return Err(format!("the {what} is not UTF-8")) };
    // serde_json's messages may quote the line's text (perhaps a raw joint_ref): only its position is kept.
    let JsonObject(members) = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("the {what} is not a JSON object"),
        _ => format!("the {what} is not valid JSON (column {})", e.column()),
    })?;
    let mut fields = Fields::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in members {
        let Some(name) = field_of(&name) else {
            if sink.strict {
                return Err(unknown_name("field", &name));
            }
            sink.ignore(&name);
            continue;
        };
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

pub(super) fn read_json(data: &[u8], sink: &mut Sink) -> Result<(), ExportError> {
    sink.names_are = "fields";
    match data.iter().position(|b| !b.is_ascii_whitespace()) {
        Some(at) if data[at] == b'[' => read_array(data, at, sink),
        _ => {
            read_lines(data, sink);
            Ok(())
        }
    }
}

fn read_lines(data: &[u8], sink: &mut Sink) {
    for (i, text) in data.split(|b| *b == b'\n').enumerate() {
        if !text.iter().all(u8::is_ascii_whitespace) {
            let fields = json_fields(text, "line", sink);
            sink.push(i as u64 + 1, fields);
        }
    }
}

/// The elements of a top-level array, each parsed on its own: one bad element spoils only itself, and each
/// keeps the line it starts on. `open` is the position of the `[`.
fn read_array(data: &[u8], open: usize, sink: &mut Sink) -> Result<(), ExportError> {
    let unclosed = || ExportError::Format {
        file: sink.file.to_string(),
        reason: "the JSON array is not closed by a ']' (a truncated file?); nothing of it was read".into(),
    };
    let mut line = 1 + data[..open].iter().filter(|b| **b == b'\n').count() as u64;
    let mut at = open + 1;
    loop {
        while let Some(b) = data.get(at).filter(|b| b.is_ascii_whitespace()) {
            line += u64::from(*b == b'\n');
            at += 1;
        }
        match data.get(at) {
            None => return Err(unclosed()),
            Some(b']') => break,
            Some(_) => {}
        }
        let end = element_end(data, at).ok_or_else(unclosed)?;
        let text = &data[at..end];
        let fields = if text.is_empty() {
            Err("an empty element (two commas in a row?)".into())
        } else {
            json_fields(text, "element", sink)
        };
        sink.push(line, fields);
        line += text.iter().filter(|b| **b == b'\n').count() as u64;
        at = end + usize::from(data[end] == b',');
    }
    if data[at + 1..].iter().all(u8::is_ascii_whitespace) {
        Ok(())
    } else {
        Err(ExportError::Format {
            file: sink.file.to_string(),
            reason: "text follows the JSON array's closing ']'; nothing of it was read".into(),
        })
    }
}

/// Where the element starting at `start` ends: the `,` or `]` that closes it (outside strings and nested
/// values), or `None` if the data ends first.
fn element_end(data: &[u8], start: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0i64, false, false);
    for (i, &b) in data.iter().enumerate().skip(start) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b',' | b']' if depth == 0 => return Some(i),
            b'}' | b']' => depth -= 1,
            _ => {}
        }
    }
    None
}
