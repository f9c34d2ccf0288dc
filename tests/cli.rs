//! The command line as a person meets it, through the real binary: errors
//! said once and clearly, locks that name themselves, JSON logs that stay
//! JSON.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const OP: &str = "OP-CLI";

fn jointops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jointops")).args(args).stdin(Stdio::null()).output().expect("the binary runs")
}

/// An agent command: the operation's secret arrives in the environment,
/// which only agents are given (the hub reads the same prefix).
fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jointops"))
        .arg("agent")
        .args(args)
        .env("JOINTOPS__OPERATIONS__OP_CLI__SECRET", "cli-secret")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn agent_config(dir: &Path, hub: &jointops::config::HubSettings) -> PathBuf {
    write(
        dir,
        "agent.toml",
        &format!(
            "force = \"MPS\"\nstate_dir = \"state\"\n[kafka]\nbootstrap = \"{}\"\ntopic = \"{}\"\n[operations.op_cli]\nid = \"{OP}\"\n",
            hub.kafka.bootstrap, hub.kafka.topic
        ),
    )
}

/// Regression: the config crate's message was printed twice, with neither
/// the line nor the key that was meant.
#[test]
fn a_config_error_is_printed_once_with_its_line_and_the_key_meant() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "hub.toml", "[kafka]\nbootstrp = \"127.0.0.1:9092\"\n");
    let out = jointops(&["lag", "--config", cfg.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("bootstrp").count(), 1, "{err}");
    assert!(err.contains("at line 2: did you mean `bootstrap`?"), "{err}");
}

#[test]
fn lag_names_the_topic_it_cannot_find() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("no.such.topic");
    let cfg =
        write(dir.path(), "hub.toml", &format!("[kafka]\nbootstrap = \"{}\"\ntopic = \"{topic}\"\n", require_broker()));
    let out = jointops(&["lag", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("no topic {topic:?}")), "{}", stderr(&out));
}

#[test]
fn with_json_logs_every_line_on_stderr_is_json_the_fatal_one_included() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "hub.toml", "[kafka]\ntopics = 1\n");
    let out = jointops(&["--log-format", "json", "lag", "--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(!err.trim().is_empty());
    for line in err.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["level"], "ERROR");
        assert!(v["fields"]["error"].as_str().unwrap().contains("did you mean `topic`?"), "{v}");
    }
}

/// Regression: row rejections and the summary's notes were plain text on
/// stderr even with `--log-format json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_publishs_rejections_are_json_lines_too() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    create_topics(&hub).await;
    let cfg = agent_config(dir.path(), &hub);
    let mut csv = synthetic_export(OP, 3, 0).csv;
    csv.push_str("R-BAD,burglary,OP-CLI,2023-10-10T10:00:00Z,,,\n");
    let export = write(dir.path(), "export.csv", &csv);
    let out = agent(&["--log-format", "json", "publish", "--config", cfg.to_str().unwrap(), export.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<serde_json::Value> =
        err.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(lines.iter().any(|v| v.to_string().contains("burglary")), "the rejection is there: {err}");
}

/// Regression: `publish` while `watch` ran on the same state folder failed
/// with SQLite's bare "database is locked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_while_watch_runs_on_the_same_state_folder_is_told_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    create_topics(&hub).await;
    let cfg = agent_config(dir.path(), &hub);
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let mut watch = Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["agent", "watch", "--config", cfg.to_str().unwrap()])
        .arg(&inbox)
        .env("JOINTOPS__OPERATIONS__OP_CLI__SECRET", "cli-secret")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "watch never said it was watching");
        match lines.next() {
            Some(Ok(line)) if line.contains("Watching.") => break,
            Some(_) => {}
            None => panic!("watch ended: {:?}", watch.wait()),
        }
    }
    let export = write(dir.path(), "export.csv", &synthetic_export(OP, 3, 0).csv);
    let out = agent(&["publish", "--no-progress", "--config", cfg.to_str().unwrap(), export.to_str().unwrap()]);
    watch.kill().unwrap();
    watch.wait().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another agent") && err.contains("agent.lock"), "{err}");
    assert!(!err.contains("database is locked"), "{err}");
}

/// Regression: `token list` and `audit` on a mistyped store path created an
/// empty store and showed it as if all were well.
#[test]
fn token_list_and_audit_on_a_mistyped_store_path_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "hub.toml", "[kafka]\n[store]\npath = \"dta/hub.sqlite\"\n");
    let cfg = cfg.to_str().unwrap();
    for args in [
        &["token", "list", "--config", cfg][..],
        &["token", "revoke", "--config", cfg, "tok_x"],
        &["audit", "--config", cfg],
        &["audit", "verify", "--config", cfg],
    ] {
        let out = jointops(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("no store at"), "{args:?}: {}", stderr(&out));
    }
    assert!(!dir.path().join("dta").exists(), "nothing was created");
}

#[test]
fn token_issue_refuses_a_liaison_token_for_an_operation_the_force_is_not_in() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "hub.toml",
        "[kafka]\n[[operations]]\nid = \"OP-1\"\nstarts = \"2023-10-09T00:00:00Z\"\nends = \"2023-10-16T00:00:00Z\"\nforces = [\"MPS\", \"KENT\"]\n",
    );
    let cfg = cfg.to_str().unwrap();
    let out = jointops(&["token", "issue", "--config", cfg, "--role", "force:TVP", "--operation", "OP-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("force TVP does not take part in OP-1 (its forces are KENT, MPS)"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "no token printed");
    let out = jointops(&["token", "issue", "--config", cfg, "--role", "force:KENT", "--operation", "OP-1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
