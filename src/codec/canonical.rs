//! Parsing Canonical Form and the CRC-64-AVRO (Rabin) fingerprint, as the Avro
//! specification defines them. Written here because apache-avro 0.21 keeps
//! `{"type":"long"}` for a logical-type field where the specification (and
//! Java Avro and fastavro) write `"long"`, which changes the fingerprint.

use serde_json::{Map, Value};

const PRIMITIVES: &[&str] = &["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The Parsing Canonical Form of a schema given as JSON text.
pub fn parsing_canonical_form(schema_json: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(schema_json).map_err(|e| format!("schema is not JSON: {e}"))?;
    let mut out = String::new();
    let mut seen = Vec::new();
    write_schema(&value, None, &mut seen, &mut out)?;
    Ok(out)
}

fn fullname(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

fn write_schema(v: &Value, ns: Option<&str>, seen: &mut Vec<String>, out: &mut String) -> Result<(), String> {
    match v {
        Value::String(name) => {
            if PRIMITIVES.contains(&name.as_str()) {
                write_json_str(name, out);
            } else {
                write_json_str(&fullname(name, ns), out);
            }
            Ok(())
        }
        Value::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(b, ns, seen, out)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(obj) => write_object(obj, ns, seen, out),
        other => Err(format!("unexpected schema element {other}")),
    }
}

fn write_object(
    obj: &Map<String, Value>,
    ns: Option<&str>,
    seen: &mut Vec<String>,
    out: &mut String,
) -> Result<(), String> {
    let ty = obj.get("type").ok_or("schema object without \"type\"")?;
    let Value::String(ty) = ty else {
        // {"type": {...}} or {"type": [...]}: the object only wraps a schema.
        return write_schema(ty, ns, seen, out);
    };
    match ty.as_str() {
        // A primitive (with or without a logicalType) is its plain name.
        t if PRIMITIVES.contains(&t) => {
            write_json_str(t, out);
            Ok(())
        }
        "record" | "error" | "enum" | "fixed" => {
            let name = obj.get("name").and_then(Value::as_str).ok_or("named type without a name")?;
            let own_ns = obj.get("namespace").and_then(Value::as_str).or(ns);
            let full = fullname(name, own_ns);
            if seen.contains(&full) {
                write_json_str(&full, out);
                return Ok(());
            }
            seen.push(full.clone());
            // Names inside take the namespace of the enclosing name.
            let inner_ns = full.rfind('.').map(|i| full[..i].to_string());
            out.push_str("{\"name\":");
            write_json_str(&full, out);
            out.push_str(",\"type\":");
            write_json_str(if ty == "error" { "record" } else { ty }, out);
            match ty.as_str() {
                "enum" => {
                    out.push_str(",\"symbols\":");
                    let symbols = obj.get("symbols").ok_or("enum without symbols")?;
                    out.push_str(&serde_json::to_string(symbols).map_err(|e| e.to_string())?);
                }
                "fixed" => {
                    let size = obj.get("size").and_then(Value::as_u64).ok_or("fixed without an integer size")?;
                    out.push_str(&format!(",\"size\":{size}"));
                }
                _ => {
                    out.push_str(",\"fields\":[");
                    let fields = obj.get("fields").and_then(Value::as_array).ok_or("record without fields")?;
                    for (i, f) in fields.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let fname = f.get("name").and_then(Value::as_str).ok_or("field without a name")?;
                        out.push_str("{\"name\":");
                        write_json_str(fname, out);
                        out.push_str(",\"type\":");
                        write_schema(f.get("type").ok_or("field without a type")?, inner_ns.as_deref(), seen, out)?;
                        out.push('}');
                    }
                    out.push(']');
                }
            }
            out.push('}');
            Ok(())
        }
        "array" => {
            out.push_str("{\"type\":\"array\",\"items\":");
            write_schema(obj.get("items").ok_or("array without items")?, ns, seen, out)?;
            out.push('}');
            Ok(())
        }
        "map" => {
            out.push_str("{\"type\":\"map\",\"values\":");
            write_schema(obj.get("values").ok_or("map without values")?, ns, seen, out)?;
            out.push('}');
            Ok(())
        }
        // A reference to a named type, written as {"type": "Name"}.
        name => {
            write_json_str(&fullname(name, ns), out);
            Ok(())
        }
    }
}

fn write_json_str(s: &str, out: &mut String) {
    // serde_json leaves non-ASCII as UTF-8, as [STRINGS] asks.
    out.push_str(&serde_json::to_string(s).expect("a str serialises"));
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const fn table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            j += 1;
        }
        t[i] = fp;
        i += 1;
    }
    t
}

static TABLE: [u64; 256] = table();

/// CRC-64-AVRO of `bytes` (the specification's Rabin fingerprint).
pub fn rabin(bytes: &[u8]) -> u64 {
    bytes.iter().fold(EMPTY, |fp, &b| (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_and_logical_types_become_plain_names() {
        assert_eq!(parsing_canonical_form(r#"{"type":"long","logicalType":"timestamp-millis"}"#).unwrap(), r#""long""#);
        assert_eq!(parsing_canonical_form(r#""string""#).unwrap(), r#""string""#);
    }

    #[test]
    fn records_keep_only_parsing_attributes_in_order_with_full_names() {
        let pcf = parsing_canonical_form(
            r#"{"doc":"x","fields":[{"type":{"type":"enum","symbols":["A","B"],"name":"E"},"name":"f","default":"A"},
                {"name":"g","type":"E"}],"name":"R","namespace":"n.s","type":"record"}"#,
        )
        .unwrap();
        assert_eq!(
            pcf,
            r#"{"name":"n.s.R","type":"record","fields":[{"name":"f","type":{"name":"n.s.E","type":"enum","symbols":["A","B"]}},{"name":"g","type":"n.s.E"}]}"#
        );
    }

    #[test]
    fn rabin_matches_the_specification_vectors() {
        // Fingerprints of the canonical forms of primitive schemas, as listed
        // by Avro's own test vectors (share/test/data/schema-tests.txt).
        assert_eq!(rabin(br#""int""#) as i64, 8247732601305521295);
        assert_eq!(rabin(br#""null""#) as i64, 7195948357588979594);
        assert_eq!(rabin(b""), EMPTY);
    }
}
