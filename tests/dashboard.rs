//! The dashboard in a real browser (Debian's Chromium, driven by
//! playwright-core from tests/browser/) against a running stack: the real
//! broker, the rollup and `serve`. The browser side (tests/browser/
//! dashboard.mjs) checks what the page shows against the API; this side makes
//! the world change under it: new events, a correction after publication, and
//! a rollup that stops. Screenshots land in target/screenshots/.
//!
//! The hub's operation is the demo's, with two more forces: WMP, which never
//! sends anything ("no data yet", a zero bar), and GMP, whose one report (a
//! withdrawn one, so the Met's published figures stay exact) reached the
//! topic 7 hours ago ("silent for 7 hours"). KENT sends two records the hub
//! refuses: one under an operation it does not know, one outside the window.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jointops::access::Role;
use jointops::domain::{ArrestOffence, Outcome, OutcomeEvent};
use jointops::store::AccessStore;
use tokio::sync::mpsc;

const OP: &str = "CLIW-2023-10";
/// 2023-10-11T12:00:00Z, inside the operation's window.
const IN_WINDOW: i64 = 1_697_025_600_000;
/// 2023-10-01T12:00:00Z, a week before it opens.
const BEFORE_WINDOW: i64 = 1_696_161_600_000;

fn require_browser(root: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is missing: the browser test needs Node.js (tests/run.sh)");
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("JOINTOPS_CHROMIUM").is_some(),
        "/usr/bin/chromium is missing: tests/run.sh installs Debian's chromium"
    );
    for package in ["playwright-core", "axe-core"] {
        assert!(
            root.join("tests/browser/node_modules").join(package).exists(),
            "tests/browser/node_modules/{package} is missing: run `npm ci` in tests/browser (tests/run.sh does)"
        );
    }
}

/// A token with a label of our choosing: the figures view names its producer.
fn token(hub: &jointops::config::HubSettings, role: Role, label: &str) -> String {
    let (token, hash) = jointops::access::new_token();
    let grant = jointops::access::Grant {
        id: jointops::access::token_id(&hash),
        role,
        operations: None,
        label: label.into(),
        created_at: 0,
        revoked_at: None,
    };
    records(hub).add_token(&hash, &grant).unwrap();
    token
}

fn arrest(force: &str, id: &str, operation: &str, occurred_at: i64) -> OutcomeEvent {
    OutcomeEvent {
        event_id: id.into(),
        revision: 1,
        force: force.into(),
        operation: operation.into(),
        occurred_at,
        reported_at: chrono::Utc::now().timestamp_millis(),
        withdrawn: false,
        joint_ref: None,
        outcome: Outcome::Arrest { offence_group: ArrestOffence::DrugSupply },
    }
}

/// The browser harness: its stdout lines arrive on a channel, so that each
/// wait has a deadline.
struct Harness {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Harness {
    fn start(root: &Path, config: &serde_json::Value) -> Harness {
        let mut child = Command::new("node")
            .arg(root.join("tests/browser/dashboard.mjs"))
            .arg(config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Harness { child, stdin, lines }
    }

    fn say(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next line, which must start with `prefix`; a FAIL line or silence
    /// past `within` fails the test.
    async fn expect(&mut self, prefix: &str, within: Duration) -> String {
        let line = tokio::time::timeout(within, self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no {prefix} line from the browser within {within:?}"))
            .unwrap_or_else(|| panic!("the browser harness exited before {prefix} (its stderr says why)"));
        assert!(line.starts_with(prefix), "expected {prefix}…, the browser said: {line}");
        line
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_tells_coordinators_and_liaisons_the_truth() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_browser(root);
    let dir = tempfile::tempdir().unwrap();
    let mut hub = scenario_hub(dir.path());
    hub.operations[0].forces.as_mut().unwrap().extend(["WMP".to_string(), "GMP".to_string()]);
    create_topics(&hub).await;
    let rollup = RunningRollup::start(&hub).await;
    publish_scenario(&hub, dir.path()).await;

    let p = producer(&hub.kafka.bootstrap);
    let refused = [
        arrest("KENT", "KENT-DL-UNKNOWN", "CLIW-2099-01", IN_WINDOW),
        arrest("KENT", "KENT-DL-EARLY", OP, BEFORE_WINDOW),
    ];
    send_events(&p, &hub.kafka.topic, &refused).await;
    let mut quiet = arrest("GMP", "GMP-QUIET-1", OP, IN_WINDOW);
    quiet.withdrawn = true;
    let seven_hours_ago = chrono::Utc::now().timestamp_millis() - (7 * 60 + 5) * 60_000;
    send_events_at(&p, &hub.kafka.topic, &[quiet], seven_hours_ago).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    // The moment of the figures to cite: after everything so far, on a whole
    // second (a datetime-local input has seconds at most).
    let as_of_ms = (chrono::Utc::now().timestamp_millis() / 1000 + 1) * 1000;

    let api = RunningApi::start(&hub).await;
    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let config = serde_json::json!({
        "base": api.base,
        "operation": OP,
        "shots": shots,
        "as_of_ms": as_of_ms,
        "tokens": {
            "coordinator": token(&hub, Role::Coordinator, "Press office"),
            "kent": token(&hub, Role::Force("KENT".into()), "Kent liaison"),
            "essex": token(&hub, Role::Force("ESSEX".into()), "Essex liaison"),
        },
        "no_data_force": "WMP",
        "silent_force": "GMP",
        "refused": {"force": "KENT", "ids": ["KENT-DL-UNKNOWN", "KENT-DL-EARLY"], "other_liaison": "essex"},
        "reason": WELSH_REASON,
    });
    let mut browser = Harness::start(root, &config);
    let ready = browser.expect("READY ", Duration::from_secs(300)).await;
    assert_eq!(ready, "READY 290", "the page shows the scenario's arrests");

    // Three more arrests while the page is open: a correction after the
    // figures were published. A connected producer first, so that the delay
    // measured is the system's, not the producer's start-up.
    let arrests: Vec<OutcomeEvent> = (0..3).map(|i| arrest("MPS", &format!("MPS-LIVE-{i}"), OP, IN_WINDOW)).collect();
    let mut warm_up = arrest("MPS", "MPS-LIVE-WARM", OP, IN_WINDOW);
    warm_up.outcome = Outcome::Engagement { people: 1 };
    send_events(&p, &hub.kafka.topic, &[warm_up]).await;
    browser.say("EXPECT arrests=293");
    let published = Instant::now();
    send_events(&p, &hub.kafka.topic, &arrests).await;
    let sent_in = published.elapsed();
    let line = browser.expect("UPDATED ", Duration::from_secs(60)).await;
    println!(
        "publication acknowledged in {sent_in:?}; the open page showed the new arrests {:?} after publishing began ({line})",
        published.elapsed()
    );

    // What changed since the publication, and since the cited moment.
    browser.say("CHANGES arrests=3");
    browser.expect("CHANGED", Duration::from_secs(60)).await;

    // The rollup stops while the page is open: the page must say so.
    let stopping = Instant::now();
    rollup.stop().await;
    let stopped_at = Instant::now();
    browser.say("STOPPED?");
    let line = browser.expect("STOPPED ", Duration::from_secs(40)).await;
    let took = stopped_at.elapsed();
    println!(
        "the rollup stopped (stop took {:?}); the page said so {:.1} s later ({line})",
        stopped_at - stopping,
        took.as_secs_f64()
    );
    assert!(took <= Duration::from_secs(15), "the page took {took:?} to say the rollup stopped");

    let status = browser.child.wait().unwrap();
    assert!(status.success(), "the browser harness failed: {status}");
    for shot in [
        "dashboard.png",
        "dashboard-phone.png",
        "liaison.png",
        "rollup-stopped.png",
        "dead-letters.png",
        "figures.png",
        "publication-changes.png",
    ] {
        assert!(shots.join(shot).exists(), "no screenshot {shot}");
    }
    api.stop().await;
    // The reason typed in the page is in the access log as typed.
    use jointops::store::AccessStore;
    let log = records(&hub).access_log(0).unwrap();
    assert!(log.iter().any(|a| a.justification.as_deref() == Some(WELSH_REASON)), "the Welsh reason is not in the log");
}

/// A reason for viewing beyond Latin-1, as a Welsh force would type it.
const WELSH_REASON: &str = "Datganiad i’r wasg – ymgyrch Dŵr";
