//! The real `jointops` binary killed with SIGKILL at random moments, round
//! after round: `agent publish` (while planning, while committing, while
//! delivering) and `agent watch`. The next run delivers whatever was pending,
//! receipts are those of an uninterrupted run, and the hub's totals equal
//! the export's: nothing lost, nothing counted twice.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use jointops::agent::ledger::Ledger;
use serde_json::json;

const OP: &str = "OP-KILL";
const ROWS: usize = 30_000;

/// splitmix64: a seeded, dependency-free source of kill moments.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("JOINTOPS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20231009);
        eprintln!("kill moments from seed {seed} (set JOINTOPS_TEST_SEED to replay another)");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from))
    }
}

/// An agent config for the binary, on the hub's topic; the secret comes
/// through the environment, as in production.
fn config(dir: &Path, hub: &jointops::config::HubSettings) -> PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "force = \"MPS\"\nstate_dir = \"state\"\n[kafka]\nbootstrap = \"{}\"\ntopic = \"{}\"\n[watch]\nsettle_ms = 200\n[operations.op_kill]\nid = \"{OP}\"\n",
        hub.kafka.bootstrap, hub.kafka.topic
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the binary; its stderr lines arrive on the returned channel.
fn jointops(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(args)
        .env("JOINTOPS__OPERATIONS__OP_KILL__SECRET", "kill-secret")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the jointops binary starts");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

/// Waits for a line containing `needle` (true), or for the process to end
/// without one (false).
fn wait_line(child: &mut Child, lines: &mpsc::Receiver<String>, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        match lines.recv_timeout(Duration::from_millis(20)) {
            Ok(line) if line.contains(needle) => return true,
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            // Ended: what it wrote last may still be on its way from the pipe.
            Err(mpsc::RecvTimeoutError::Timeout) if child.try_wait().unwrap().is_some() => {
                return lines.iter().any(|line| line.contains(needle));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(Instant::now() < deadline, "no {needle:?} within {within:?}");
            }
        }
    }
}

/// SIGKILL, unless it already ended; `Some(status)` when it ended on its own.
fn kill_9(child: &mut Child) -> Option<ExitStatus> {
    if let Some(status) = child.try_wait().unwrap() {
        return Some(status);
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    None
}

fn ledger_state(state_dir: &Path) -> (u64, u64) {
    // Opening it also proves a kill never leaves it unreadable or locked.
    let ledger = Ledger::open(state_dir).expect("the ledger opens after a SIGKILL");
    for m in ledger.pending().unwrap() {
        jointops::codec::Registry::builtin().decode(&m.value).expect("every outbox message is whole");
    }
    (ledger.records_len().unwrap(), ledger.outbox_len().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_killed_at_random_moments_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    create_topics(&hub).await;
    let cfg = config(dir.path(), &hub);
    let cfg = cfg.to_str().unwrap();
    let state_dir = dir.path().join("state");
    let mut rng = Rng::from_env();

    let rounds = 8;
    let (mut mid_delivery, mut before_commit, mut finished) = (0, 0, 0);
    for round in 0..rounds {
        // Each round a new version: revisions and withdrawals over the last.
        let export = synthetic_export(OP, ROWS, round);
        let file = dir.path().join(format!("v{round}.csv"));
        std::fs::write(&file, &export.csv).unwrap();
        let (mut child, lines) =
            jointops(&["agent", "publish", "--no-progress", "--config", cfg, file.to_str().unwrap()]);
        // Odd rounds: just after the plan is committed, i.e. while sending.
        // Even rounds: anywhere from start-up to the end.
        let moment = if round % 2 == 1 {
            wait_line(&mut child, &lines, "Export planned.", Duration::from_secs(60));
            rng.millis(0, 80)
        } else {
            rng.millis(0, 1_100)
        };
        tokio::time::sleep(moment).await; // the kill moment itself, not a stand-in for a condition
        let ended = kill_9(&mut child);
        let (records, outbox) = ledger_state(&state_dir);
        let at = match ended {
            Some(status) => {
                assert!(status.success(), "round {round}: {status}");
                finished += 1;
                "after it finished"
            }
            None if outbox > 0 => {
                mid_delivery += 1;
                "while delivering"
            }
            None => {
                before_commit += 1;
                "before its plan was committed, or after its last acknowledgement"
            }
        };
        eprintln!("round {round}: killed {moment:?} in, {at}: ledger {records} records, outbox {outbox}");
    }
    assert!(mid_delivery >= 2, "at least two kills landed mid-delivery ({mid_delivery})");

    // The last version, to completion: the outbox first, then the file.
    let last = synthetic_export(OP, ROWS, rounds);
    let file = dir.path().join("final.csv");
    std::fs::write(&file, &last.csv).unwrap();
    let (mut child, _lines) = jointops(&["agent", "publish", "--no-progress", "--config", cfg, file.to_str().unwrap()]);
    let status = child.wait().unwrap();
    assert!(status.success(), "the final run: {status}");
    assert_eq!(ledger_state(&state_dir), (ROWS as u64, 0), "every record known, the outbox empty");

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(120)).await;
    let stats = rollup.stop().await;
    let totals = totals(&hub, OP).joint;
    assert_eq!((totals.people_engaged, totals.arrests), (last.people_engaged, last.arrests));
    assert!(dead_letters(&hub).is_empty(), "no conflicting revision, nothing invalid: {:?}", dead_letters(&hub));
    eprintln!(
        "publish: {rounds} SIGKILL rounds ({mid_delivery} mid-delivery, {before_commit} before commit or after the \
         last ack, {finished} finished first); rollup {stats:?}"
    );
}

/// What an uninterrupted `watch` would write for version `k` after `k - 1`:
/// a row is published when its line changed, withdrawn when it now says so.
fn expected_receipt(name: &str, k: u64) -> serde_json::Value {
    let now = synthetic_export(OP, ROWS / 3, k).csv;
    let (mut published, mut withdrawn) = (0, 0);
    if k == 0 {
        published = ROWS / 3;
    } else {
        let before = synthetic_export(OP, ROWS / 3, k - 1).csv;
        for (a, b) in before.lines().zip(now.lines()).skip(1) {
            if a != b {
                published += 1;
                withdrawn += usize::from(b.split(',').nth(4) == Some("true"));
            }
        }
    }
    json!({"file": name, "published": published, "unchanged": ROWS / 3 - published, "withdrawn": withdrawn,
           "rejected": 0, "rejections": []})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_killed_at_random_moments_writes_the_receipts_of_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![operation(OP, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    create_topics(&hub).await;
    let cfg = config(dir.path(), &hub);
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let versions = 4;
    for k in 0..versions {
        drop_file(&inbox, &format!("v{k}.csv"), &synthetic_export(OP, ROWS / 3, k).csv);
    }
    let args = ["agent", "watch", "--config", cfg.to_str().unwrap(), inbox.to_str().unwrap()];
    let receipts = || (0..versions).filter(|k| inbox.join(format!("done/v{k}.csv.receipt.json")).exists()).count();
    let mut rng = Rng::from_env();

    let mut kills = 0;
    while receipts() < versions as usize && kills < 20 {
        let (mut child, _lines) = jointops(&args);
        let moment = rng.millis(50, 1_000);
        tokio::time::sleep(moment).await; // the kill moment itself
        assert!(kill_9(&mut child).is_none(), "watch never ends on its own");
        kills += 1;
        let (records, outbox) = ledger_state(&dir.path().join("state"));
        eprintln!(
            "watch kill {kills} at {moment:?}: {} receipts, ledger {records} records, outbox {outbox}",
            receipts()
        );
    }

    // A last start, to the end, then SIGTERM: exit 0.
    let (mut child, lines) = jointops(&args);
    assert!(wait_line(&mut child, &lines, "Watching.", Duration::from_secs(30)), "watch started");
    let deadline = Instant::now() + Duration::from_secs(120);
    while receipts() < versions as usize {
        assert!(Instant::now() < deadline, "not every receipt within 120 s");
        assert!(child.try_wait().unwrap().is_none(), "watch ended on its own");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    assert!(wait_line(&mut child, &lines, "Stopped.", Duration::from_secs(30)), "logged its stop");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM: {status}");

    for k in 0..versions {
        let name = format!("v{k}.csv");
        let mut r = read_json(&inbox.join("done").join(format!("{name}.receipt.json")));
        r.as_object_mut().unwrap().remove("finished_at");
        assert_eq!(r, expected_receipt(&name, k), "{name}'s receipt after {kills} kills");
    }
    let mut done: Vec<String> =
        std::fs::read_dir(inbox.join("done")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    done.sort();
    assert_eq!(done.len(), 2 * versions as usize, "each file once, with one receipt: {done:?}");
    assert_eq!(ledger_state(&dir.path().join("state")), ((ROWS / 3) as u64, 0));

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(120)).await;
    rollup.stop().await;
    let last = synthetic_export(OP, ROWS / 3, versions - 1);
    let totals = totals(&hub, OP).joint;
    assert_eq!((totals.people_engaged, totals.arrests), (last.people_engaged, last.arrests));
    assert!(dead_letters(&hub).is_empty(), "{:?}", dead_letters(&hub));
    eprintln!("watch: {kills} SIGKILLs, then SIGTERM; receipts as an uninterrupted run");
}
