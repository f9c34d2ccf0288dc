//! `agent publish` (the real binary, the real broker) of exports as forces'
//! spreadsheets write them, and of several files where one cannot be read:
//! every file is listed with what became of it, and nothing is misread.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use jointops::agent::pseudonym::pseudonymise;
use jointops::domain::{ArrestOffence, ClosureType, Kind, Outcome};

const OP: &str = "OP-EXPORTS";
const SECRET: &str = "exports-secret";

fn config(dir: &Path, hub: &jointops::config::HubSettings) -> PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "force = \"MPS\"\nstate_dir = \"state\"\n[kafka]\nbootstrap = \"{}\"\ntopic = \"{}\"\n[operations.op_exports]\nid = \"{OP}\"\n",
        hub.kafka.bootstrap, hub.kafka.topic
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn publish(config: &Path, files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["agent", "publish", "--no-progress", "--json", "--config"])
        .arg(config)
        .args(files)
        .env("JOINTOPS__OPERATIONS__OP_EXPORTS__SECRET", SECRET)
        .output()
        .expect("the jointops binary runs")
}

fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messy_excel_export_is_published_and_every_file_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    create_topics(&hub).await;
    let config = config(dir.path(), &hub);
    // Excel's "CSV UTF-8" in a decimal-comma locale: BOM, `;`, CRLF, headings
    // in capitals with spaces, values in any case, a column of its own.
    let messy = dir.path().join("Excel export.csv");
    std::fs::write(
        &messy,
        "\u{feff}RECORD ID; Kind ;OPERATION;OCCURRED AT;JOINT REF;Offence Group;Closure;People;Officer Name\r\n\
         A1;Arrest;OP-EXPORTS;2023-10-10T12:00:00+01:00;ja-2023-0141;weapons;;;PC Smith\r\n\
         E1;ENGAGEMENT;OP-EXPORTS;2023-10-10T13:00:00+01:00;;;;12;PC Jones\r\n\
         L1;Line_Closure;OP-EXPORTS;2023-10-10T14:00:00+01:00;07700 900123;;holder_charged;;\r\n",
    )
    .unwrap();
    let headerless = dir.path().join("no-header.csv");
    std::fs::write(&headerless, "R9,line_closure,OP-EXPORTS,2023-10-10T10:00:00Z,07700 900124\n").unwrap();
    let later = dir.path().join("later.json");
    let element = r#"{"record_id":"E2","kind":"Engagement","operation":"OP-EXPORTS","occurred_at":"2023-10-11T09:00:00Z","people":"4"}"#;
    std::fs::write(&later, format!("[\n  {element}\n]\n")).unwrap();

    let out = publish(&config, &[&messy, &headerless, &later]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a file failed: {stderr}");
    let s = summary(&out);
    let files = s["files"].as_array().expect("files");
    assert_eq!(files.len(), 3, "every file is listed: {s}");
    assert_eq!((files[0]["published"].as_u64(), files[0]["rejected"].as_u64()), (Some(3), Some(0)), "{s}");
    let note = files[0]["notes"][0].as_str().unwrap_or_default();
    assert!(note.starts_with(r#"unknown columns ignored: "Officer Name""#), "{s}");
    assert!(files[1]["error"].as_str().unwrap_or_default().contains("line 1 is not a header row"), "{s}");
    assert!(files[2]["error"].as_str().unwrap_or_default().starts_with("not read:"), "{s}");
    assert!(s["error"].as_str().unwrap_or_default().contains("no-header.csv"), "{s}");
    let everything = format!("{stderr}{s}");
    for raw in ["07700", "0141", "Smith", "Jones"] {
        assert!(!everything.contains(raw), "{raw} leaked: {everything}");
    }

    let events = consume_events(&hub.kafka.bootstrap, &hub.kafka.topic);
    let mut got: Vec<_> = events.iter().map(|e| (e.event_id.clone(), e.outcome.clone(), e.joint_ref.clone())).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let pseudo = |kind, raw| Some(pseudonymise(SECRET.as_bytes(), kind, raw).unwrap());
    assert_eq!(
        got,
        [
            (
                "A1".into(),
                Outcome::Arrest { offence_group: ArrestOffence::Weapons },
                pseudo(Kind::Arrest, "JA-2023-0141")
            ),
            ("E1".into(), Outcome::Engagement { people: 12 }, None),
            (
                "L1".into(),
                Outcome::LineClosure { closure: ClosureType::HolderCharged },
                pseudo(Kind::LineClosure, "07700900123")
            ),
        ]
    );

    // The file that was not read goes through on its own, as a JSON array.
    let out = publish(&config, &[&later]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(summary(&out)["files"][0]["published"].as_u64(), Some(1));
    let events = consume_events(&hub.kafka.bootstrap, &hub.kafka.topic);
    assert!(events.iter().any(|e| e.event_id == "E2" && e.outcome == Outcome::Engagement { people: 4 }));
}

#[test]
fn an_empty_export_is_reported_as_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![]);
    let config = config(dir.path(), &hub);
    let (empty, header_only) = (dir.path().join("empty.jsonl"), dir.path().join("header.csv"));
    std::fs::write(&empty, "").unwrap();
    std::fs::write(&header_only, "record_id;kind;operation;occurred_at\r\n").unwrap();
    let out = publish(&config, &[&empty, &header_only]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let s = summary(&out);
    for f in s["files"].as_array().unwrap() {
        assert_eq!(f["notes"], serde_json::json!(["no rows"]), "{s}");
    }
}
