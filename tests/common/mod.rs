//! Shared fixtures for the integration tests: the real local Kafka broker
//! (never a stand-in: without it the tests fail, loudly), unique topics, and
//! an in-process rollup that can be stopped and restarted.
#![allow(dead_code)]

pub mod openapi;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use jointops::config::{
    AgentKafka, AgentOperation, AgentSettings, HubKafka, HubSettings, OperationSettings, Secret, TrustSettings,
};
use jointops::domain::{OperationTotals, OutcomeEvent};
use jointops::store::{SqliteStore, TotalsReader};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn bootstrap() -> String {
    std::env::var("JOINTOPS_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Panics with instructions when no broker answers: a test that needs Kafka
/// must never pass without it.
pub fn require_broker() -> String {
    let b = bootstrap();
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &b).create().expect("client");
    if let Err(e) = consumer.fetch_metadata(None, Duration::from_secs(10)) {
        panic!(
            "No Kafka broker answers at {b} ({e}). These tests need the real local broker: \
             run tests/run.sh, or deploy/local/kafka.sh start first (set JOINTOPS_TEST_BOOTSTRAP for another address)."
        );
    }
    b
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn hub(dir: &Path, operations: Vec<OperationSettings>) -> HubSettings {
    // The rollup's logs, shown with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .with_test_writer()
        .try_init();
    let topic = unique("test.outcomes");
    HubSettings {
        kafka: HubKafka {
            bootstrap: require_broker(),
            dlq_topic: format!("{topic}.dlq"),
            topic,
            group: unique("test-rollup"),
            partitions: 6,
            replication_factor: 1,
            min_insync_replicas: 1,
            librdkafka: BTreeMap::new(),
            properties: None,
        },
        store: jointops::config::StoreSettings { path: dir.join("hub.sqlite"), records: None },
        rollup: jointops::config::RollupSettings { batch_size: 2000, batch_ms: 50, stall_seconds: 5 },
        api: jointops::config::ApiSettings { listen: "127.0.0.1:0".into(), ..Default::default() },
        operations,
        // Not about trust: the fixtures' producers send unsigned records (tests/trust.rs and tests/agent_signing.rs sign).
        trust: TrustSettings { require_signatures: false, keys: Vec::new() },
        metrics: Default::default(),
    }
}

pub fn operation(id: &str, starts: &str, ends: &str, forces: Option<&[&str]>) -> OperationSettings {
    OperationSettings {
        id: id.into(),
        name: id.into(),
        starts: starts.into(),
        ends: ends.into(),
        forces: forces.map(|f| f.iter().map(|s| s.to_string()).collect()),
    }
}

pub fn agent(hub: &HubSettings, force: &str, state_dir: PathBuf, secrets: &[(&str, &str)]) -> AgentSettings {
    AgentSettings {
        force: force.into(),
        state_dir,
        kafka: AgentKafka {
            bootstrap: hub.kafka.bootstrap.clone(),
            topic: hub.kafka.topic.clone(),
            give_up_after_s: jointops::config::default_give_up_after_s(),
            librdkafka: BTreeMap::new(),
            properties: None,
        },
        operations: secrets
            .iter()
            .map(|(id, s)| (id.to_lowercase().replace('-', "_"), AgentOperation::new(*id, Secret::new(*s))))
            .collect(),
        spool_limit: jointops::config::default_spool_limit(),
        accept_secret_change: Default::default(),
        watch: jointops::config::WatchSettings { settle_ms: 200 },
        exports: Default::default(),
        signing_key: None,
        metrics: Default::default(),
    }
}

/// A rollup running in this process until `stop`.
pub struct RunningRollup {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<jointops::rollup::Stats>>,
}

impl RunningRollup {
    pub async fn start(settings: &HubSettings) -> RunningRollup {
        let store = SqliteStore::open(&settings.store.path).expect("store");
        let (tx, rx) = oneshot::channel::<()>();
        let s = settings.clone();
        let task = tokio::spawn(async move {
            jointops::rollup::run(&s, Box::new(store), async {
                let _ = rx.await;
            })
            .await
        });
        RunningRollup { stop: Some(tx), task }
    }

    pub async fn stop(mut self) -> jointops::rollup::Stats {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.expect("rollup task").expect("rollup ran cleanly")
    }
}

/// Waits until the store has consumed everything in the topic.
pub async fn wait_caught_up(settings: &HubSettings, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let s = settings.clone();
        let lag = tokio::task::spawn_blocking(move || jointops::rollup::lag(&s)).await.unwrap();
        match lag {
            Ok(l) if l.total() == 0 && !l.partitions.is_empty() => return,
            other => {
                assert!(Instant::now() < deadline, "rollup did not catch up within {within:?}: {other:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn totals(settings: &HubSettings, operation: &str) -> OperationTotals {
    let store = SqliteStore::open_read(&settings.store.path).unwrap();
    store.totals(operation).unwrap().unwrap_or_default()
}

pub fn dead_letters(settings: &HubSettings) -> BTreeMap<String, i64> {
    SqliteStore::open_read(&settings.store.path).unwrap().dead_letter_counts().unwrap()
}

pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// `(key, value, partition)` of a record sent as is.
pub type RawRecord = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i32>);

/// Sends raw records and waits for each acknowledgement.
pub async fn send_raw(p: &FutureProducer, topic: &str, records: &[RawRecord]) {
    let sends = records.iter().map(|(k, v, partition)| {
        let mut r = FutureRecord::<[u8], [u8]>::to(topic);
        if let Some(k) = k {
            r = r.key(k.as_slice());
        }
        if let Some(v) = v {
            r = r.payload(v.as_slice());
        }
        if let Some(p) = partition {
            r = r.partition(*p);
        }
        p.send(r, Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("acknowledged");
    }
}

/// Encodes events as the agent would and sends them under their identity keys.
pub async fn send_events(p: &FutureProducer, topic: &str, events: &[OutcomeEvent]) {
    let registry = jointops::codec::Registry::builtin();
    for chunk in events.chunks(20_000) {
        let records: Vec<_> =
            chunk.iter().map(|e| (Some(e.identity_key().into_bytes()), Some(registry.encode(e)), None)).collect();
        send_raw(p, topic, &records).await;
    }
}

/// Creates the hub's topics up front (tests that produce before the rollup starts).
pub async fn create_topics(settings: &HubSettings) {
    let k = &settings.kafka;
    let config = jointops::kafka::client_config(&k.bootstrap, &[], &k.librdkafka);
    jointops::kafka::ensure_topics(&config, &k.topic, &k.dlq_topic, jointops::kafka::TopicSpec::of(k))
        .await
        .expect("topics");
}

// ---- Agent tests (tests/agent_*.rs) ----

/// Puts a file into an inbox the way an export job should: written under a
/// temporary name, then renamed in whole.
pub fn drop_file(inbox: &Path, name: &str, contents: &str) {
    let tmp = inbox.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

/// Polls `ready` every 50 ms until it holds; panics naming `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every event in `topic` (all partitions, from the start to the current
/// end), decoded.
pub fn consume_events(bootstrap: &str, topic: &str) -> Vec<OutcomeEvent> {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("test-agent-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let ends = jointops::kafka::high_watermarks(&consumer, topic).expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut next: BTreeMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while next.iter().any(|(p, n)| n < &ends[p]) {
        assert!(Instant::now() < deadline, "could not read {topic} to its end: at {next:?} of {ends:?}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            next.insert(m.partition(), m.offset() + 1);
            let value = m.payload().expect("a value");
            events.push(jointops::codec::Registry::builtin().decode(value).expect("an event"));
        }
    }
    events
}

/// A synthetic force export (CSV) and what it counts. Record `R{i}` is an
/// arrest when `i % 10 == 0`, otherwise an engagement of 1..=50 people;
/// `version` changes about a fifth of the people counts, and from version 1
/// on withdraws one record in fifty, so that each version publishes
/// revisions and withdrawals over the one before.
pub struct SyntheticExport {
    pub csv: String,
    pub rows: usize,
    pub people_engaged: i64,
    pub arrests: i64,
}

pub fn synthetic_export(operation: &str, rows: usize, version: u64) -> SyntheticExport {
    let mut csv = String::from("record_id,kind,operation,occurred_at,withdrawn,offence_group,people\n");
    let (mut people_engaged, mut arrests) = (0, 0);
    let version = version as i64;
    for i in 0..rows as i64 {
        let withdrawn = version > 0 && i % 50 == version % 50;
        let at = format!("2023-10-{:02}T{:02}:{:02}:00Z", 10 + i % 5, i % 24, i % 60);
        if i % 10 == 0 {
            csv.push_str(&format!("R{i},arrest,{operation},{at},{withdrawn},DRUG_SUPPLY,\n"));
            arrests += i64::from(!withdrawn);
        } else {
            let bump = if (i + version) % 5 == 0 { version * 7 } else { 0 };
            let people = 1 + (i * 13 + bump) % 50;
            csv.push_str(&format!("R{i},engagement,{operation},{at},{withdrawn},,{people}\n"));
            people_engaged += if withdrawn { 0 } else { people };
        }
    }
    SyntheticExport { csv, rows, people_engaged, arrests }
}

/// Like `send_events`, with the records' Kafka timestamp set to `at` (ms):
/// as-of figures are defined by it.
pub async fn send_events_at(p: &FutureProducer, topic: &str, events: &[OutcomeEvent], at: i64) {
    let registry = jointops::codec::Registry::builtin();
    let encoded: Vec<(String, Vec<u8>)> = events.iter().map(|e| (e.identity_key(), registry.encode(e))).collect();
    let sends = encoded
        .iter()
        .map(|(k, v)| p.send(FutureRecord::to(topic).key(k).payload(v).timestamp(at), Duration::from_secs(30)));
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("acknowledged");
    }
}

/// A running `jointops serve` in this process, on a free port.
pub struct RunningApi {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningApi {
    pub async fn start(settings: &HubSettings) -> RunningApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(jointops::api::serve(settings.clone(), listener, async {
            let _ = rx.await;
        }));
        RunningApi { base, stop: Some(tx), task }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.expect("api task").expect("api ran cleanly");
    }
}

/// The hub's records file (tokens, the access log), as `[store]` names it.
pub fn records(settings: &HubSettings) -> jointops::store::RecordsStore {
    jointops::store::open_records(&settings.store).expect("records store")
}

/// Issues a token straight into the records, as `jointops token issue` does.
pub fn issue_token(
    settings: &HubSettings,
    role: jointops::access::Role,
    operations: Option<&[&str]>,
) -> (String, String) {
    use jointops::store::AccessStore;
    let (token, hash) = jointops::access::new_token();
    let grant = jointops::access::Grant {
        id: jointops::access::token_id(&hash),
        role,
        operations: operations.map(|o| o.iter().map(|s| s.to_string()).collect()),
        label: "test".into(),
        created_at: 0,
        revoked_at: None,
    };
    records(settings).add_token(&hash, &grant).unwrap();
    (token, grant.id)
}

/// The demo's operation, as `deploy/local/hub.toml` has it.
pub fn scenario_hub(dir: &Path) -> HubSettings {
    hub(
        dir,
        vec![operation(
            "CLIW-2023-10",
            "2023-10-09T00:00:00+01:00",
            "2023-10-16T00:00:00+01:00",
            Some(&["MPS", "KENT", "ESSEX", "SUSSEX", "HERTS", "TVP"]),
        )],
    )
}

pub const SCENARIO_SECRETS: [(&str, &str); 2] = [("CLIW-2023-10", "s-10"), ("CLIW-2023-11", "s-11")];

/// Writes the demo's exports (deploy/local/make_exports.py) under `dir` and
/// publishes them through in-process agents in the demo's order. Returns the
/// generator's expected.json and each run's summary.
pub async fn publish_scenario(hub: &HubSettings, dir: &Path) -> (serde_json::Value, Vec<jointops::agent::FileSummary>) {
    let exports = dir.join("exports");
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/make_exports.py"))
        .arg(&exports)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "make_exports.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exports.join("expected.json")).unwrap()).unwrap();
    let mut summaries = Vec::new();
    for run in expected["agent_runs"].as_array().unwrap() {
        let force = run["force"].as_str().unwrap();
        let settings = agent(hub, force, dir.join("state").join(force), &SCENARIO_SECRETS);
        let file = exports.join(run["file"].as_str().unwrap());
        let summary = jointops::agent::publish_files(&settings, &[file], false).await.unwrap();
        summaries.push(summary.files.into_iter().next().expect("one file"));
    }
    (expected, summaries)
}

/// An `agent watch` running in this process until `stop`.
pub struct RunningWatcher {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<jointops::agent::WatchStats, jointops::agent::WatchError>>,
    pub status: tokio::sync::watch::Receiver<jointops::agent::WatchStatus>,
}

impl RunningWatcher {
    pub fn start(settings: &AgentSettings, inbox: &Path) -> RunningWatcher {
        let watcher = jointops::agent::Watcher::new(settings, inbox);
        let status = watcher.status();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(watcher.run(async {
            let _ = rx.await;
        }));
        RunningWatcher { stop, task, status }
    }

    pub async fn stop(self) -> jointops::agent::WatchStats {
        let _ = self.stop.send(());
        self.task.await.expect("watch task").expect("watch stopped cleanly")
    }

    /// Waits until the watcher's status satisfies `ready`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        ready: impl FnMut(&jointops::agent::WatchStatus) -> bool,
    ) {
        let waited = tokio::time::timeout(within, self.status.wait_for(ready)).await.map(|r| r.is_ok());
        assert!(waited.is_ok(), "{what}: not within {within:?}; status {:?}", *self.status.borrow());
        assert_eq!(waited, Ok(true), "{what}: the watcher stopped");
    }
}

impl RunningRollup {
    /// `rollup --rebuild` in this process until `stop`.
    pub async fn start_rebuild(settings: &HubSettings) -> RunningRollup {
        let (tx, rx) = oneshot::channel::<()>();
        let s = settings.clone();
        let task = tokio::spawn(async move {
            jointops::rollup::run_rebuild(&s, async {
                let _ = rx.await;
            })
            .await
        });
        RunningRollup { stop: Some(tx), task }
    }
}

/// More synthetic reports, under event ids that no earlier stream used.
pub fn more_events(reports: usize, seed: u64) -> Vec<OutcomeEvent> {
    jointops::loadgen::generate(reports, seed)
        .into_iter()
        .map(|mut e| {
            e.event_id = format!("more-{}", e.event_id);
            e
        })
        .collect()
}

/// 2023-10-10T01:06:40Z, inside OP-1's window.
pub const OP1_T: i64 = 1_696_900_000_000;

/// A valid arrest of `force` in OP-1 (see [`op1_hub`]), reported a minute
/// after it happened.
pub fn op1_arrest(force: &str, id: &str) -> OutcomeEvent {
    OutcomeEvent {
        event_id: id.into(),
        revision: 1,
        force: force.into(),
        operation: "OP-1".into(),
        occurred_at: OP1_T,
        reported_at: OP1_T + 60_000,
        withdrawn: false,
        joint_ref: None,
        outcome: jointops::domain::Outcome::Arrest { offence_group: jointops::domain::ArrestOffence::DrugSupply },
    }
}

/// A hub config file for the binary: the settings' broker and topics, the
/// store beside it, the API on `port`.
pub fn write_hub_config(dir: &Path, hub: &HubSettings, port: u16) -> PathBuf {
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap = {:?}\ntopic = {:?}\ndlq_topic = {:?}\n[store]\npath = \"hub.sqlite\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n\
             # Not about trust: unsigned records count.\n[trust]\nrequire_signatures = false\n",
            hub.kafka.bootstrap, hub.kafka.topic, hub.kafka.dlq_topic
        ),
    )
    .unwrap();
    config
}

/// A hub with one operation, OP-1 (9–16 October 2023, MPS and KENT taking
/// part), and its topics created: the bad-input tests' setting.
pub async fn op1_hub(dir: &Path) -> HubSettings {
    let hub = hub(dir, vec![operation("OP-1", "2023-10-09T00:00:00Z", "2023-10-16T00:00:00Z", Some(&["MPS", "KENT"]))]);
    create_topics(&hub).await;
    hub
}

/// [`op1_hub`] on a one-partition topic: there every record is on its key's
/// partition (§3), for tests that put records with arbitrary keys on
/// partition 0 to show that it keeps moving.
pub async fn op1_hub_one_partition(dir: &Path) -> HubSettings {
    let mut hub =
        hub(dir, vec![operation("OP-1", "2023-10-09T00:00:00Z", "2023-10-16T00:00:00Z", Some(&["MPS", "KENT"]))]);
    hub.kafka.partitions = 1;
    create_topics(&hub).await;
    hub
}

/// `(key, value, headers)` of a record sent with headers, to the partition
/// the producer's partitioner (Java's murmur2) gives its key.
pub type HeadedRecord = (Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Sends records with headers and waits for each acknowledgement.
pub async fn send_headed(p: &FutureProducer, topic: &str, records: &[HeadedRecord]) {
    use rdkafka::message::{Header, OwnedHeaders};
    let sends = records.iter().map(|(k, v, headers)| {
        let mut h = OwnedHeaders::new();
        for (name, value) in headers {
            h = h.insert(Header { key: name, value: Some(value) });
        }
        p.send(FutureRecord::<[u8], [u8]>::to(topic).key(k).payload(v).headers(h), Duration::from_secs(30))
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(e, _)| e).expect("acknowledged");
    }
}
