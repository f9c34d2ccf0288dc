//! The dashboard in a real browser (Debian's Chromium, driven by
//! playwright-core from tests/browser/) against a running stack: the page
//! shows the store's totals, and after new events are published the figures
//! change without a reload. Also measures the delay from publication to the
//! page, and leaves screenshots in target/screenshots/.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jointops::access::Role;
use jointops::domain::{ArrestOffence, Outcome, OutcomeEvent};

const OP: &str = "CLIW-2023-10";

fn require_browser(root: &Path) {
    let node = Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is missing: the browser test needs Node.js (tests/run.sh)");
    assert!(
        Path::new("/usr/bin/chromium").exists() || std::env::var_os("JOINTOPS_CHROMIUM").is_some(),
        "/usr/bin/chromium is missing: tests/run.sh installs Debian's chromium"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `npm ci` in tests/browser (tests/run.sh does)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_store_and_updates_live() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_browser(root);
    let dir = tempfile::tempdir().unwrap();
    let hub = scenario_hub(dir.path());
    create_topics(&hub).await;
    let rollup = RunningRollup::start(&hub).await;
    publish_scenario(&hub, dir.path()).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    let api = RunningApi::start(&hub).await;
    let (token, _) = issue_token(&hub, Role::Coordinator, None);

    let shots = root.join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut child = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .args([&api.base, &token, OP])
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let line = lines.next().expect("a line from the browser").unwrap();
        (line, lines)
    });
    let (line, lines) = tokio::time::timeout(Duration::from_secs(120), ready).await.unwrap().unwrap();
    assert_eq!(line, "READY 290", "the page shows the scenario's arrests");

    // Three more arrests, published while the page is open.
    let now = chrono::Utc::now().timestamp_millis();
    let arrests: Vec<OutcomeEvent> = (0..3)
        .map(|i| OutcomeEvent {
            event_id: format!("MPS-LIVE-{i}"),
            revision: 1,
            force: "MPS".into(),
            operation: OP.into(),
            occurred_at: 1_697_000_000_000,
            reported_at: now,
            withdrawn: false,
            joint_ref: None,
            outcome: Outcome::Arrest { offence_group: ArrestOffence::DrugSupply },
        })
        .collect();
    // A connected producer first, so that the delay measured is the
    // system's, not the producer's start-up.
    let p = producer(&hub.kafka.bootstrap);
    let mut warm_up = arrests[0].clone();
    warm_up.event_id = "MPS-LIVE-WARM".into();
    warm_up.outcome = Outcome::Engagement { people: 1 };
    send_events(&p, &hub.kafka.topic, &[warm_up]).await;
    writeln!(stdin, "EXPECT arrests=293").unwrap();
    stdin.flush().unwrap();
    let published = Instant::now();
    send_events(&p, &hub.kafka.topic, &arrests).await;
    let sent_in = published.elapsed();
    let mut lines = lines;
    let updated = tokio::task::spawn_blocking(move || lines.next().expect("a line from the browser").unwrap());
    let line = tokio::time::timeout(Duration::from_secs(60), updated).await.unwrap().unwrap();
    let seen_after = published.elapsed();
    assert!(line.starts_with("UPDATED "), "{line}");
    assert!(child.wait().unwrap().success());
    println!("publication acknowledged in {sent_in:?}; the open page showed the new arrests {seen_after:?} after publishing began ({line})");
    assert!(shots.join("dashboard.png").exists() && shots.join("dashboard-phone.png").exists());

    api.stop().await;
    rollup.stop().await;
}
