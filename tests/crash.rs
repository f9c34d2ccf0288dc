//! The rollup killed with SIGKILL at random moments, 20 times, while a stream
//! of 200,000+ events (duplicates, revisions, withdrawals, joint outcomes)
//! flows in: the final totals equal the reference model's exactly.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use jointops::domain::Engine;
use jointops::loadgen;
use jointops::store::{SqliteStore, Store};

const KILLS: usize = 20;

fn consumed(settings: &jointops::config::HubSettings) -> i64 {
    SqliteStore::open_read(&settings.store.path)
        .ok()
        .and_then(|s| s.offsets(&settings.kafka.topic).ok())
        .map_or(0, |o| o.values().sum())
}

fn spawn_rollup(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["rollup", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .expect("jointops binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_mid_stream_leave_the_totals_exact() {
    let dir = tempfile::tempdir().unwrap();
    let hub =
        hub(dir.path(), vec![operation(loadgen::OPERATION, "2023-10-01T00:00:00Z", "2023-11-01T00:00:00Z", None)]);
    create_topics(&hub).await;
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap = {:?}\ntopic = {:?}\ndlq_topic = {:?}\ngroup = {:?}\n\
             [store]\npath = {:?}\n[rollup]\nbatch_size = 2000\nbatch_ms = 100\n\
             # Not about trust: unsigned records count.\n[trust]\nrequire_signatures = false\n\
             [[operations]]\nid = {:?}\nstarts = \"2023-10-01T00:00:00Z\"\nends = \"2023-11-01T00:00:00Z\"\n",
            hub.kafka.bootstrap,
            hub.kafka.topic,
            hub.kafka.dlq_topic,
            hub.kafka.group,
            hub.store.path.display().to_string(),
            loadgen::OPERATION
        ),
    )
    .unwrap();
    let log = dir.path().join("rollup.log");
    let events = loadgen::generate(91_000, 2026);
    assert!(events.len() >= 200_000, "{} events", events.len());

    // The stream flows in while the rollup is being killed.
    let p = producer(&hub.kafka.bootstrap);
    let topic = hub.kafka.topic.clone();
    let to_send = events.clone();
    let sender = tokio::spawn(async move {
        for chunk in to_send.chunks(10_000) {
            send_events(&p, &topic, chunk).await;
        }
    });

    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut restart_to_progress = Vec::new();
    for _ in 0..KILLS {
        let before = consumed(&hub);
        let started = Instant::now();
        let mut child = spawn_rollup(&config, &log);
        // Kill at a random moment: sometimes before it has applied anything,
        // mostly in the middle of a batch.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let after = Duration::from_millis(100 + rng % 1400);
        let deadline = started + after;
        let mut progressed = None;
        while Instant::now() < deadline {
            if progressed.is_none() && consumed(&hub) > before {
                progressed = Some(started.elapsed());
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "rollup exited by itself: {}",
                std::fs::read_to_string(&log).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        restart_to_progress.extend(progressed);
    }
    sender.await.unwrap();
    let in_flight = events.len() as i64 - consumed(&hub);
    assert!(in_flight > 0, "the kills happened mid-stream");

    let mut child = spawn_rollup(&config, &log);
    wait_caught_up(&hub, Duration::from_secs(300)).await;
    sigterm(&mut child);

    let mut reference = Engine::new();
    for e in &events {
        reference.apply(e.clone()).unwrap();
    }
    assert_eq!(&totals(&hub, loadgen::OPERATION), reference.totals(loadgen::OPERATION).unwrap());
    assert!(dead_letters(&hub).is_empty(), "{:?}", dead_letters(&hub));
    let mut waits = restart_to_progress.clone();
    waits.sort();
    println!(
        "{KILLS} kills survived; {} events, {in_flight} still to apply after the last kill; restart → first committed batch: median {:?}, max {:?} ({} of {KILLS} restarts got that far before their kill)",
        events.len(),
        waits.get(waits.len() / 2),
        waits.last(),
        waits.len()
    );
}

/// Stops the last rollup with SIGTERM (clean shutdown) via the `kill` command.
fn sigterm(child: &mut Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean shutdown after SIGTERM: {status:?}");
}
