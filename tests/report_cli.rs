//! `jointops report` on the command line: what it says about the operation
//! it is asked for. No broker needed: the store is read as it is.

use std::path::Path;
use std::process::{Command, Output};

fn report(config: &Path, operation: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["report", "--config"])
        .arg(config)
        .args(["--operation", operation])
        .output()
        .expect("the jointops binary runs")
}

/// Regression: `report --operation NOPE-1` (or `cliw-2023-10`) printed a
/// full table of zeros and exited 0.
#[test]
fn report_of_an_unknown_operation_is_an_error_naming_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.toml");
    let window = "starts = \"2023-10-09T00:00:00+01:00\"\nends = \"2023-10-16T00:00:00+01:00\"\n";
    std::fs::write(
        &config,
        format!("[kafka]\n[store]\npath = \"hub.sqlite\"\n[[operations]]\nid = \"CLIW-2023-10\"\n{window}[[operations]]\nid = \"CLIW-2023-11\"\n{window}"),
    )
    .unwrap();
    drop(jointops::store::SqliteStore::open(&dir.path().join("hub.sqlite")).expect("an empty store"));

    let out = report(&config, "cliw-2023-10");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit {:?}; stdout {}", out.status, String::from_utf8_lossy(&out.stdout));
    assert!(out.stdout.is_empty(), "no table: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("\"cliw-2023-10\" is not known"), "{stderr}");
    assert!(stderr.contains("known operations: CLIW-2023-10, CLIW-2023-11"), "{stderr}");
    assert!(stderr.contains("did you mean CLIW-2023-10?"), "{stderr}");

    let out = report(&config, "NOPE-1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && out.stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("\"NOPE-1\" is not known") && !stderr.contains("did you mean"), "{stderr}");

    // A known operation with nothing counted yet is a report of zeros.
    let out = report(&config, "CLIW-2023-10");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("CLIW-2023-10"));
}
