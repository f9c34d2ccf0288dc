//! Tests of the export readers: every field rule, both formats, line numbers.

use super::*;

const HEAD: &str = r#""record_id":"R1","operation":"OP-1","occurred_at":"2023-10-10T12:00:00+01:00""#;
const T0: Millis = 1_696_935_600_000; // 2023-10-10T11:00:00Z

fn read(format: Format, text: &str) -> (Vec<ExportRow>, Vec<RowError>) {
    read_export_from(text.as_bytes(), format, "f").expect("readable")
}
/// The outcome of one JSON line made of the common fields plus `rest`, or its rejection reason.
fn json(rest: &str) -> Result<ExportRow, String> {
    let (mut rows, mut errors) = read(Format::Json, &format!("{{{HEAD},{rest}}}"));
    rows.pop().ok_or_else(|| errors.pop().expect("one row or error").reason)
}
fn outcome(rest: &str) -> Outcome {
    json(rest).unwrap_or_else(|e| panic!("{rest}: {e}")).outcome
}
fn reason(rest: &str) -> String {
    json(rest).expect_err(rest)
}

#[test]
fn format_follows_the_extension() {
    for (name, want) in [("a.jsonl", Format::Json), ("a.NDJSON", Format::Json), ("b.json", Format::Json)] {
        assert_eq!(Format::of_path(Path::new(name)), Ok(want));
    }
    assert_eq!(Format::of_path(Path::new("x/a.csv")), Ok(Format::Csv));
    assert!(Format::of_path(Path::new("a.xlsx")).is_err() && Format::of_path(Path::new("csv")).is_err());
}

#[test]
fn jsonl_accepts_every_kind() {
    let row = json(r#""kind":"arrest","offence_group":"WEAPONS""#).expect("arrest");
    assert_eq!((row.line, row.record_id.as_str(), row.operation.as_str()), (1, "R1", "OP-1"));
    assert_eq!((row.occurred_at, row.joint_ref, row.withdrawn), (T0, None, false));
    assert_eq!(row.outcome, Outcome::Arrest { offence_group: ArrestOffence::Weapons });
    let charges = outcome(r#""kind":"charge","charges":" DRUG_SUPPLY_CLASS_A : 2 ;WEAPONS:1""#);
    let want = vec![
        ChargeCount { offence: ChargeOffence::DrugSupplyClassA, count: 2 },
        ChargeCount { offence: ChargeOffence::Weapons, count: 1 },
    ];
    assert_eq!(charges, Outcome::Charge { charges: want });
    // A JSON number keeps its exact text: 1.25 kg is 1250000 mg, not 1249999.
    let seizure = outcome(r#""kind":"seizure","item":"DRUG_CLASS_A","quantity":1.25,"unit":"kg","provisional":true"#);
    assert_eq!(seizure, Outcome::Seizure { item: SeizureItem::DrugClassA, quantity: 1_250_000, provisional: true });
    let seizure = outcome(r#""kind":"seizure","item":"DRUG_CLASS_B","quantity":0.0012500,"unit":"kg""#);
    assert_eq!(seizure, Outcome::Seizure { item: SeizureItem::DrugClassB, quantity: 1250, provisional: false });
    let seizure = outcome(r#""kind":"seizure","item":"FIREARM","quantity":"2""#);
    assert_eq!(seizure, Outcome::Seizure { item: SeizureItem::Firearm, quantity: 2, provisional: false });
    assert_eq!(outcome(r#""kind":"line_closure""#), Outcome::LineClosure { closure: ClosureType::Other });
    let closure = outcome(r#""kind":"line_closure","closure":"HOLDER_CHARGED""#);
    assert_eq!(closure, Outcome::LineClosure { closure: ClosureType::HolderCharged });
    assert_eq!(outcome(r#""kind":"safeguarding""#), Outcome::Safeguarding { referral: Referral::None });
    assert_eq!(outcome(r#""kind":"safeguarding","referral":"NRM""#), Outcome::Safeguarding { referral: Referral::Nrm });
    assert_eq!(outcome(r#""kind":"engagement","people":1000000"#), Outcome::Engagement { people: 1_000_000 });
}

#[test]
fn joint_ref_and_withdrawn() {
    let row = json(r#""kind":"line_closure","joint_ref":"  07700 900123 ","withdrawn":"TRUE""#).expect("row");
    assert_eq!((row.joint_ref.as_deref(), row.withdrawn), (Some("07700 900123"), true));
    let row = json(r#""kind":"arrest","offence_group":"OTHER","joint_ref":"","withdrawn":false"#).expect("row");
    assert_eq!((row.joint_ref, row.withdrawn), (None, false));
    assert_eq!(json(r#""kind":"arrest","offence_group":"OTHER","joint_ref":null"#).expect("row").joint_ref, None);
    // A joint_ref with nothing to pseudonymise is refused without showing it.
    let e = reason(r#""kind":"line_closure","joint_ref":"secret-name""#);
    assert!(e.starts_with("joint_ref: a value of 11 characters") && !e.contains("secret"), "{e}");
    let e = reason(r#""kind":"line_closure","joint_ref":["07700900123"]"#);
    assert!(e.starts_with("joint_ref: must be a string") && !e.contains("0770"), "{e}");
    assert_eq!(reason(r#""kind":"arrest","withdrawn":"yes""#), r#"withdrawn: "yes" is not true or false"#);
}

#[test]
fn jsonl_rejections_name_field_and_value() {
    let cases = [
        (
            r#""kind":"arrest","offence_group":"DRUGS""#,
            r#"offence_group: "DRUGS" is not one of DRUG_SUPPLY, MODERN_SLAVERY, WEAPONS, VIOLENCE, OTHER"#,
        ),
        (r#""kind":"arrest""#, "offence_group: missing, required for kind arrest"),
        (
            r#""kind":"Arrests""#,
            r#"kind: "Arrests" is not one of arrest, charge, seizure, line_closure, safeguarding, engagement"#,
        ),
        (
            r#""kind":"arrest","offence_group":"OTHER","people":3"#,
            r#"people: "3" is not a field of kind arrest (only of engagement)"#,
        ),
        (r#""kind":"arrest","kind":"charge""#, "kind: appears twice"),
        (r#""kind":"charge""#, "charges: missing, required for kind charge"),
        (r#""kind":"charge","charges":"WEAPONS:1;WEAPONS:2""#, "charges: offence WEAPONS is repeated"),
        (r#""kind":"charge","charges":"WEAPONS:0""#, r#"charges: count "0" for WEAPONS is not an integer in 1..=1000"#),
        (r#""kind":"charge","charges":"WEAPONS:1001""#, "charges: count \"1001\" for WEAPONS is not"),
        (r#""kind":"charge","charges":"WEAPONS:1;""#, "charges: \"WEAPONS:1;\" is not OFFENCE:COUNT pairs"),
        (r#""kind":"charge","charges":"GUNS:1""#, "charges: offence \"GUNS\" is not one of DRUG_SUPPLY_CLASS_A"),
        (
            r#""kind":"seizure","item":"CASH","quantity":"12.345","unit":"GBP""#,
            "quantity: 12.345 GBP is not a whole number of pence",
        ),
        (r#""kind":"seizure","item":"CASH","quantity":"12""#, "unit: a unit is required for CASH"),
        (r#""kind":"seizure","item":"CASH","quantity":-1,"unit":"GBP""#, "quantity: \"-1\" is not a plain decimal"),
        (r#""kind":"seizure","item":"CASH","quantity":1e3,"unit":"GBP""#, "quantity: \"1e"),
        (r#""kind":"seizure","item":"WEAPON","unit":"count""#, "quantity: missing, required for kind seizure"),
        (r#""kind":"seizure","quantity":"1""#, "item: missing, required for kind seizure"),
        (r#""kind":"line_closure","closure":"CLOSED""#, "closure: \"CLOSED\" is not one of HOLDER_CHARGED"),
        (r#""kind":"safeguarding","referral":"nrms""#, "referral: \"nrms\" is not one of NONE, SUPPORT_PROVIDER, NRM"),
        (r#""kind":"engagement""#, "people: missing, required for kind engagement"),
        (r#""kind":"engagement","people":1000001"#, "people: \"1000001\" is not an integer in 1..=1000000"),
        (r#""kind":"engagement","people":"2.0""#, "people: \"2.0\" is not an integer"),
        (r#""kind":"arrest","offence_group":{}"#, "offence_group: must be a string, number or boolean"),
    ];
    for (rest, want) in cases {
        let got = reason(rest);
        assert!(got.starts_with(want), "{rest}\n got: {got}\nwant: {want}");
    }
}

#[test]
fn common_fields_are_checked() {
    let row = |text: &str| read(Format::Json, text).1.pop().expect("rejected").reason;
    let e = row(r#"{"record_id":"R1","kind":"arrest","operation":"OP 1","occurred_at":"2023-10-10T12:00:00Z"}"#);
    assert!(e.starts_with("operation: \"OP 1\" is not"), "{e}");
    let e = row(r#"{"record_id":"R/1","kind":"arrest","operation":"OP","occurred_at":"2023-10-10T12:00:00Z"}"#);
    assert!(e.starts_with("record_id: \"R/1\" is not"), "{e}");
    let e = row(r#"{"record_id":"R1","kind":"arrest","operation":"OP","occurred_at":"2023-10-10 12:00"}"#);
    assert_eq!(e, r#"occurred_at: "2023-10-10 12:00" is not RFC 3339 (e.g. 2023-10-10T12:00:00+01:00)"#);
    let e = row(r#"{"record_id":"R1","kind":"arrest","operation":"OP","occurred_at":"1999-12-31T23:59:59Z"}"#);
    assert!(e.contains("outside the years 2000..2100"), "{e}");
    assert_eq!(row(r#"{"kind":"arrest"}"#), "record_id: missing");
}

#[test]
fn jsonl_lines_blank_lines_and_bad_lines() {
    let good = format!(r#"{{{HEAD},"kind":"arrest","offence_group":"OTHER"}}"#);
    let text = format!("\u{feff}{good}\n\n   \r\n[1,2]\n{{\"record_id\": \"R2\"\n\"a string\"\n{good}\r\n{good}");
    let (rows, errors) = read(Format::Json, &text);
    // Duplicates are the caller's business: both R1 rows come back.
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), [1, 7, 8]);
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(got[0], "f:4: the line is not a JSON object");
    assert!(got[1].starts_with("f:5: the line is not valid JSON (column"), "{}", got[1]);
    assert_eq!(got[2], "f:6: the line is not a JSON object");
    let (rows, errors) = read_export_from(&b"\xff\n"[..], Format::Json, "f").expect("readable");
    assert!(rows.is_empty() && errors[0].reason == "the line is not UTF-8");
}

const CSV_HEAD: &str = "record_id,kind,operation,occurred_at,joint_ref,withdrawn,offence_group,charges,item,quantity,unit,provisional,closure,referral,people\n";

#[test]
fn csv_rows_with_line_numbers() {
    let text = format!(
        "{CSV_HEAD}A1,arrest,OP,2023-10-10T12:00:00+01:00,,,VIOLENCE,,,,,,,,\n\n\
         S1,seizure,OP,2023-10-10T11:00:00Z, EX-1 ,false,,,CASH,1250.50,GBP,True,,,\n\
         X1,seizure,OP,2023-10-10T11:00:00Z,,,,,CASH,1,GBP,,,,4\n\
         L1,line_closure,OP,2023-10-10T11:00:00Z,07700900123,TRUE,,,,,,,,,\n\
         short,arrest\n\
         C1,charge,OP,2023-10-10T11:00:00Z,,,,\"MODERN_SLAVERY:1; OTHER:3\",,,,,,,\n"
    );
    let (rows, errors) = read(Format::Csv, &text);
    assert_eq!(
        rows.iter().map(|r| (r.line, r.record_id.as_str())).collect::<Vec<_>>(),
        [(2, "A1"), (4, "S1"), (6, "L1"), (8, "C1")]
    );
    assert_eq!(rows[0].outcome, Outcome::Arrest { offence_group: ArrestOffence::Violence });
    assert_eq!((rows[0].occurred_at, rows[1].joint_ref.as_deref()), (T0, Some("EX-1")));
    let cash = Outcome::Seizure { item: SeizureItem::Cash, quantity: 125_050, provisional: true };
    assert_eq!(rows[1].outcome, cash);
    assert_eq!((rows[2].withdrawn, &rows[2].outcome), (true, &Outcome::LineClosure { closure: ClosureType::Other }));
    assert_eq!(rows[3].outcome.kind(), Kind::Charge);
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        [
            "f:5: people: \"4\" is not a field of kind seizure (only of engagement)",
            "f:7: the row has 2 cells, the header 15 (the delimiter is \",\")",
        ]
    );
}

#[test]
fn csv_line_numbers_survive_crlf_and_multi_line_cells() {
    let head = "record_id,kind,operation,occurred_at,people\r\n";
    let text = format!("{head}\r\nE1,engagement,OP,2023-10-10T11:00:00Z,\"1\r\n2\"\r\n\r\n\r\nE2,engagement,OP,x,0");
    let (rows, errors) = read(Format::Csv, &text);
    assert!(rows.is_empty());
    assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 7]);
    assert_eq!(errors[0].reason, r#"people: "1\r\n2" is not an integer in 1..=1000000"#);
    assert!(errors[1].reason.starts_with(r#"occurred_at: "x" is not RFC 3339"#));
}

fn with(format: Format, text: &str, settings: &ExportSettings) -> Result<Export, ExportError> {
    read_export_with(text.as_bytes(), format, "f.csv", settings)
}
fn strict() -> ExportSettings {
    ExportSettings { strict_columns: true, ..ExportSettings::default() }
}
fn header_error(text: &str, settings: &ExportSettings) -> String {
    match with(Format::Csv, text, settings) {
        Err(ExportError::Header { reason, .. }) => reason,
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn csv_header_problems_spoil_the_file() {
    let header = |text: &str| header_error(text, &ExportSettings::default());
    assert_eq!(header("record_id,kind,kind,operation,occurred_at\n"), "column kind appears twice");
    assert_eq!(header("record_id,Kind,operation,occurred_at, KIND \n"), "column kind appears twice");
    assert_eq!(header("record_id,kind,operation\n"), "the required column occurred_at is missing");
    // Regression: a file without a header row echoed its first data row
    // (raw references included) into errors and receipts.
    let headerless = header("R1,line_closure,OP-1,2023-10-10T10:00:00Z,07700 900123\n");
    assert!(headerless.starts_with("line 1 is not a header row: none of its 5 cells"), "{headerless}");
    assert!(!headerless.contains("07700"), "{headerless}");
    let bad = read_export_from(&b"record_id,\xff\n"[..], Format::Csv, "f.csv").map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(bad, Err("f.csv: bad CSV header: not UTF-8".to_string()));
    // A header with only the required columns (and a BOM, as spreadsheets write) is fine.
    let (rows, errors) =
        read(Format::Csv, "\u{feff}record_id, kind ,operation,occurred_at\nE1,engagement,OP,2023-10-10T11:00:00Z\n");
    assert!(rows.is_empty() && errors[0].to_string() == "f:2: people: missing, required for kind engagement");
}

#[test]
fn unknown_columns_are_ignored_with_one_note_or_refused_when_strict() {
    let text = "record_id,kind,operation,occurred_at,people,Officer Name,quantiy,07700 900123\n\
                E1,engagement,OP,2023-10-10T11:00:00Z,3,PC Smith,2,x\nE2,engagement,OP,2023-10-10T11:00:00Z,4,,,\n";
    let export = with(Format::Csv, text, &ExportSettings::default()).expect("readable");
    assert_eq!(
        export.rows.iter().map(|r| r.outcome.clone()).collect::<Vec<_>>(),
        [Outcome::Engagement { people: 3 }, Outcome::Engagement { people: 4 }]
    );
    assert!(export.errors.is_empty(), "{:?}", export.errors);
    let [note] = export.notes.as_slice() else { panic!("one note: {:?}", export.notes) };
    assert!(
        note.starts_with(
            r#"unknown columns ignored: "Officer Name", "quantiy", 1 whose names are not shown as they look like data"#
        ),
        "{note}"
    );
    assert!(!note.contains("07700") && !note.contains("Smith"), "{note}");
    // strict_columns: the file is refused, naming the column only when it looks like a name.
    let e = header_error(text, &strict());
    assert!(e.starts_with(r#"unknown column "Officer Name" (the fields are record_id"#), "{e}");
    let e = header_error("record_id,kind,operation,occurred_at,07700 900123\n", &strict());
    assert!(e.starts_with("column 5 is not a field name") && !e.contains("07700"), "{e}");
    // JSON members follow the same rule, per row.
    let line = format!(r#"{{{HEAD},"kind":"arrest","Offence Group":"other","quantiy":3,"07700 900123":1}}"#);
    let export = with(Format::Json, &line, &ExportSettings::default()).expect("readable");
    assert_eq!(export.rows[0].outcome, Outcome::Arrest { offence_group: ArrestOffence::Other });
    assert!(export.notes[0].starts_with(r#"unknown fields ignored: "quantiy", 1 whose"#), "{:?}", export.notes);
    let export = with(Format::Json, &line, &strict()).expect("readable");
    assert!(export.errors[0].reason.starts_with(r#"unknown field "quantiy" (the fields are"#), "{:?}", export.errors);
}

#[test]
fn headers_and_values_as_spreadsheets_write_them() {
    // Excel in a locale with a decimal comma: BOM, `;`, CRLF, upper-case headings with spaces, mixed-case enums.
    let text =
        "\u{feff} RECORD ID ;Kind;OPERATION;Occurred_At ;Joint Ref;Offence Group;Item;Quantity;Unit;Withdrawn\r\n\
                A1;Arrest;OP;2023-10-10T12:00:00+01:00;;weapons;;;;False\r\n\
                S1;SEIZURE;OP;2023-10-10T12:00:00+01:00;ex-1;;Drug_Class_A;1,5;KG;\r\n\
                S2;Seizure;OP;2023-10-10T12:00:00+01:00;;;cash;12.50;gbp;TRUE\r\n";
    let export = with(Format::Csv, text, &ExportSettings::default()).expect("readable");
    let got: Vec<_> = export.rows.iter().map(|r| (r.line, r.record_id.as_str(), r.withdrawn)).collect();
    assert_eq!(got, [(2, "A1", false), (4, "S2", true)]);
    assert_eq!(export.rows[0].outcome, Outcome::Arrest { offence_group: ArrestOffence::Weapons });
    assert_eq!(
        export.rows[1].outcome,
        Outcome::Seizure { item: SeizureItem::Cash, quantity: 1250, provisional: false }
    );
    // A decimal comma is not guessed at: 1,5 could be a thousands separator.
    assert_eq!(export.errors.len(), 1, "{:?}", export.errors);
    assert!(export.errors[0].reason.starts_with(r#"quantity: "1,5" is not a plain decimal"#), "{:?}", export.errors);
    assert!(export.notes.is_empty(), "{:?}", export.notes);
    // Tabs are detected too; a charge's offences may be in any case.
    let tsv =
        "record_id\tkind\toperation\toccurred_at\tcharges\nC1\tcharge\tOP\t2023-10-10T11:00:00Z\tweapons:1;Other:2\n";
    let export = with(Format::Csv, tsv, &ExportSettings::default()).expect("readable");
    let want = vec![
        ChargeCount { offence: ChargeOffence::Weapons, count: 1 },
        ChargeCount { offence: ChargeOffence::Other, count: 2 },
    ];
    assert_eq!(export.rows[0].outcome, Outcome::Charge { charges: want });
    // A configured delimiter wins over detection.
    let semi = ExportSettings { csv_delimiter: CsvDelimiter::Byte(b';'), ..ExportSettings::default() };
    let text =
        "record_id;kind;operation;occurred_at;charges\nC1;charge;OP;2023-10-10T11:00:00Z;\"WEAPONS:1,OTHER:2\"\n";
    let export = with(Format::Csv, text, &semi).expect("readable");
    assert!(export.errors[0].reason.starts_with("charges: count \"1,OTHER:2\" for WEAPONS"), "{:?}", export.errors);
}

#[test]
fn a_semicolon_file_read_with_commas_gets_a_hint() {
    let commas = ExportSettings { csv_delimiter: CsvDelimiter::Byte(b','), ..ExportSettings::default() };
    let e = header_error("record_id;kind;operation;occurred_at\nR1;arrest;OP;x\n", &commas);
    assert!(e.starts_with("line 1 is not a header row: none of its 1 cells names a field"), "{e}");
    assert!(e.ends_with(r#"holds ";": set [exports] csv_delimiter = ";" (or "auto")"#), "{e}");
    // The same file, detected: read as it was meant.
    let export = with(Format::Csv, "record_id;kind;operation;occurred_at\n", &ExportSettings::default()).unwrap();
    assert_eq!(export.notes, [NO_ROWS]);
}

#[test]
fn empty_files_of_every_format_are_no_rows() {
    for (format, text) in [
        (Format::Json, ""),
        (Format::Json, "\n  \r\n"),
        (Format::Json, "\u{feff}[ ]\n"),
        (Format::Csv, ""),
        (Format::Csv, "\u{feff}\r\n"),
        (Format::Csv, "record_id,kind,operation,occurred_at\n"),
        (Format::Csv, "Record ID;Kind;Operation;Occurred At"),
    ] {
        let export = with(format, text, &ExportSettings::default()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(export.rows.is_empty() && export.errors.is_empty(), "{text:?}");
        assert_eq!(export.notes, [NO_ROWS], "{text:?}");
    }
}

#[test]
fn a_json_array_of_objects_is_read_element_by_element() {
    let good = |id: &str| {
        format!(
            r#"{{"record_id":"{id}","kind":"engagement","operation":"OP","occurred_at":"2023-10-10T11:00:00Z","people":2}}"#
        )
    };
    let text = format!("\u{feff}  [\n  {},\n  {{\"record_id\": \"R, ]\"}},\n  7,\n  {}\n]\n", good("E1"), good("E2"));
    let export = with(Format::Json, &text, &ExportSettings::default()).expect("readable");
    assert_eq!(export.rows.iter().map(|r| (r.line, r.record_id.as_str())).collect::<Vec<_>>(), [(2, "E1"), (5, "E2")]);
    let got: Vec<_> = export.errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
    // The `, ]` inside a string ends nothing.
    assert_eq!(
        got,
        [(3, r#"record_id: "R, ]" is not [A-Za-z0-9._:-]{1,128}"#), (4, "the element is not a JSON object")]
    );
    let nested = format!("[{}]", good("E3").replace(r#""people":2"#, r#""people":2,"x":{"a":[1,"]"]}"#));
    let export = with(Format::Json, &nested, &ExportSettings::default()).expect("readable");
    assert_eq!((export.rows.len(), export.errors.len()), (1, 0));
    // A truncated array is refused whole, and so is text after it.
    for bad in [format!("[{}", good("E1")), format!("[{},", good("E1")), format!("[{}] x", good("E1"))] {
        let e = with(Format::Json, &bad, &ExportSettings::default()).expect_err(&bad);
        assert!(matches!(e, ExportError::Format { .. }), "{bad}: {e}");
    }
}

#[test]
fn read_export_dispatches_on_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("force.ndjson");
    std::fs::write(&path, format!("{{{HEAD},\"kind\":\"engagement\",\"people\":12}}\n")).expect("write");
    let defaults = ExportSettings::default();
    let Export { rows, errors, notes } = read_export(&path, &defaults).expect("read");
    assert_eq!((rows.len(), errors.len(), &rows[0].outcome), (1, 0, &Outcome::Engagement { people: 12 }));
    assert!(notes.is_empty(), "{notes:?}");
    let missing = dir.path().join("absent.csv");
    assert!(matches!(read_export(&missing, &defaults), Err(ExportError::Io { .. })));
    assert!(matches!(read_export(&dir.path().join("a.txt"), &defaults), Err(ExportError::Format { .. })));
}
