//! The real binary against a port where no broker listens: a bad address is
//! refused at start, and an unreachable broker is named within seconds,
//! waited for `give_up_after_s`, and given up on with the outbox kept, which
//! the real broker then receives.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use jointops::agent::ledger::Ledger;

const OP: &str = "OP-UNREACHABLE";

fn config(dir: &Path, bootstrap: &str, topic: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "force = \"MPS\"\nstate_dir = \"state\"\n[kafka]\nbootstrap = \"{bootstrap}\"\ntopic = \"{topic}\"\n\
         give_up_after_s = 4\n[operations.op_unreachable]\nid = \"{OP}\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn jointops(args: &[&str], config: &Path, files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(args)
        .arg("--config")
        .arg(config)
        .args(files)
        .env("JOINTOPS__OPERATIONS__OP_UNREACHABLE__SECRET", "s")
        .env("RUST_LOG", "info")
        .output()
        .expect("the jointops binary runs")
}

/// A port nothing listens on: bound, then released.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_given_up_on_with_the_outbox_kept() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    create_topics(&hub).await;
    let export = dir.path().join("export.csv");
    let mut csv = String::from("record_id,kind,operation,occurred_at,people\n");
    for i in 1..=3 {
        csv.push_str(&format!("E{i},engagement,{OP},2023-10-10T12:00:00Z,{i}\n"));
    }
    std::fs::write(&export, csv).unwrap();

    let down = format!("127.0.0.1:{}", free_port());
    let config_down = config(dir.path(), &down, &hub.kafka.topic);
    let out = jointops(&["agent", "publish", "--no-progress"], &config_down, &[&export]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let waiting = format!("Waiting for the broker at {down}: 3 messages in the outbox");
    assert!(stderr.contains(&waiting), "{waiting:?} not in: {stderr}");
    let answered = format!("no Kafka broker answered at {down} within");
    for says in [answered.as_str(), "keeps its 3 messages", "agent resend"] {
        assert!(stderr.contains(says), "{says:?} not in: {stderr}");
    }
    let state = dir.path().join("state");
    assert_eq!(Ledger::open(&state).unwrap().pending().unwrap().len(), 3, "the outbox kept every message");

    // The broker reachable: `agent resend` delivers the outbox.
    let config_up = config(dir.path(), &hub.kafka.bootstrap, &hub.kafka.topic);
    let out = jointops(&["agent", "resend"], &config_up, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(Ledger::open(&state).unwrap().pending().unwrap().is_empty());
    let events = consume_events(&hub.kafka.bootstrap, &hub.kafka.topic);
    let ids: BTreeSet<_> = events.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids, ["E1".to_string(), "E2".into(), "E3".into()].into());
    // Revisions follow the publication time: one run, one revision each.
    assert!(events.iter().all(|e| e.revision >= 1 && e.revision == events[0].revision), "{events:?}");
}

#[test]
fn a_bad_bootstrap_address_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (bootstrap, says) in
        [("127.0.0.1:99999", "port \"99999\" is not a number in 1..=65535"), ("kafka", "has no port")]
    {
        let config = config(dir.path(), bootstrap, "t");
        let out = jointops(&["agent", "resend"], &config, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("kafka.bootstrap") && stderr.contains(says), "{bootstrap}: {stderr}");
        assert!(!dir.path().join("state").exists(), "nothing was started");
    }
}
