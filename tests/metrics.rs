//! Prometheus metrics of the three processes ops run, scraped from the real
//! binaries against the real broker, checked with `promtool check metrics`
//! (Debian's prometheus package; tests/run.sh unpacks it), and saved to
//! target/metrics/ for deploy/prometheus/check.sh, which checks that every
//! metric the alerts and the dashboard query is there.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const OP: &str = "OP-1";

fn promtool() -> PathBuf {
    let path = std::env::var_os("JOINTOPS_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/prometheus/usr/bin/promtool"));
    assert!(
        path.exists(),
        "promtool is missing at {} (tests/run.sh unpacks Debian's prometheus package)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running binary, killed if the test fails before it is stopped.
struct Process(Child);

impl Process {
    fn start(args: &[&str], env: &[(&str, String)]) -> Process {
        let mut c = Command::new(env!("CARGO_BIN_EXE_jointops"));
        c.args(args).stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        Process(c.spawn().unwrap())
    }

    /// SIGTERM, and a clean exit within 10 s.
    async fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(status.success(), "{status:?}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "did not stop within 10 s of SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

/// The scrape of `port` once `ready` holds for it, within 60 s.
async fn scrape_until(port: u16, path: &str, ready: impl Fn(&str) -> bool) -> String {
    let url = format!("http://127.0.0.1:{port}{path}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(res) = reqwest::get(&url).await {
            let text = res.text().await.unwrap();
            if ready(&text) {
                return text;
            }
        }
        assert!(std::time::Instant::now() < deadline, "{url} never showed what was expected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `promtool check metrics` passes, and the scrape is kept for check.sh.
fn check_and_keep(name: &str, text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool on {name}: {said}\n{text}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/metrics");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.prom")), text).unwrap();
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_serve_and_agent_expose_metrics_that_promtool_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let hub = op1_hub(dir.path()).await;
    let mut early = op1_arrest("MPS", "early");
    early.occurred_at -= 3 * 86_400_000;
    let p = producer(&hub.kafka.bootstrap);
    send_events(&p, &hub.kafka.topic, &[op1_arrest("MPS", "a1"), op1_arrest("KENT", "k1"), early]).await;
    send_events(&p, &hub.kafka.topic, &[op1_arrest("MPS", "a1")]).await;

    // The rollup, with its own metrics listener.
    let (api_port, rollup_port) = (free_port(), free_port());
    let config = write_hub_config(dir.path(), &hub, api_port);
    let text = std::fs::read_to_string(&config).unwrap();
    let ops = "[[operations]]\nid = \"OP-1\"\nstarts = \"2023-10-09T00:00:00Z\"\nends = \"2023-10-16T00:00:00Z\"\nforces = [\"MPS\", \"KENT\"]\n";
    std::fs::write(&config, format!("{text}{ops}")).unwrap();
    let cfg = config.to_str().unwrap();
    let rollup = Process::start(
        &["rollup", "--config", cfg],
        &[("JOINTOPS__METRICS__LISTEN", format!("127.0.0.1:{rollup_port}"))],
    );
    // Consumed, and the batch that holds them committed.
    let counted = |t: &str| {
        sample(t, "jointops_rollup_records_consumed_total").is_some_and(|n| n >= 4.0)
            && t.contains("jointops_rollup_last_event_timestamp_seconds{")
    };
    let r = scrape_until(rollup_port, "/metrics", counted).await;
    assert_eq!(sample(&r, "jointops_rollup_events_total{result=\"new\"}"), Some(2.0), "{r}");
    assert_eq!(sample(&r, "jointops_rollup_events_total{result=\"duplicate\"}"), Some(1.0), "{r}");
    assert_eq!(sample(&r, "jointops_rollup_dead_letters_total{reason=\"outside-window\"}"), Some(1.0), "{r}");
    assert_eq!(sample(&r, "jointops_rollup_partitions_owned"), Some(6.0));
    assert!(r.contains("jointops_rollup_batch_commit_seconds_bucket{le=\"0.01\"}"), "a histogram: {r}");
    assert!(r.contains("jointops_rollup_last_event_timestamp_seconds{operation=\"OP-1\",force=\"KENT\"}"), "{r}");
    assert_eq!(sample(&r, "jointops_operation_window_open{operation=\"OP-1\"}"), Some(0.0), "2023's window is closed");
    let lag = scrape_until(rollup_port, "/metrics", |t| t.contains("jointops_rollup_consumer_lag{")).await;
    check_and_keep("rollup", &lag);

    // serve: requests by route template and status.
    let serve = Process::start(&["serve", "--config", cfg], &[]);
    let base = format!("http://127.0.0.1:{api_port}");
    scrape_until(api_port, "/readyz", |t| t == "ready\n").await;
    assert_eq!(reqwest::get(format!("{base}/api/v1/operations/OP-1/totals")).await.unwrap().status(), 401);
    let s = scrape_until(api_port, "/metrics", |t| t.contains("jointops_api_requests_total")).await;
    let series = "jointops_api_requests_total{route=\"/api/v1/operations/{id}/{view}\",method=\"GET\",status=\"401\"}";
    assert_eq!(sample(&s, series), Some(1.0), "{s}");
    check_and_keep("serve", &s);

    // agent watch: the outbox and what it published.
    let agent_port = free_port();
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "force = \"MPS\"\nstate_dir = \"state\"\n[kafka]\nbootstrap = \"{}\"\ntopic = \"{}\"\n[operations.op_1]\nid = \"{OP}\"\n[metrics]\nlisten = \"127.0.0.1:{agent_port}\"\n",
            hub.kafka.bootstrap, hub.kafka.topic
        ),
    )
    .unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let watch = Process::start(
        &["agent", "watch", "--config", agent_cfg.to_str().unwrap(), inbox.to_str().unwrap()],
        &[("JOINTOPS__OPERATIONS__OP_1__SECRET", "metrics-secret".into())],
    );
    drop_file(&inbox, "export.csv", &synthetic_export(OP, 5, 0).csv);
    let published = |t: &str| sample(t, "jointops_agent_records_published_total") == Some(5.0);
    let a = scrape_until(agent_port, "/metrics", published).await;
    assert_eq!(sample(&a, "jointops_agent_files_total{result=\"accepted\"}"), Some(1.0), "{a}");
    let drained = scrape_until(agent_port, "/metrics", |t| sample(t, "jointops_agent_outbox_depth") == Some(0.0)).await;
    assert_eq!(sample(&drained, "jointops_agent_outbox_oldest_pending_age_seconds"), Some(0.0));
    check_and_keep("agent", &drained);

    // Every process stops cleanly on SIGTERM, as an orchestrator stops it.
    watch.stop().await;
    serve.stop().await;
    rollup.stop().await;
}
