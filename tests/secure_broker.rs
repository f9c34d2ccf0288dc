//! Contract §7's broker layer on the real secure broker that
//! `KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh start` runs: no one in
//! without credentials, a force may only write the input topic, the hub may
//! read it in its group and write dead letters; and the agent and the hub
//! work through it with the properties files the script leaves.
//!
//! The ACLs name the script's topics and group (jointops.outcomes,
//! jointops.outcomes.dlq, jointops-rollup), so these tests use them rather
//! than unique names, under a unique operation.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{synthetic_export, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const TOPIC: &str = "jointops.outcomes";
const DLQ: &str = "jointops.outcomes.dlq";
const GROUP: &str = "jointops-rollup";
const FORCE: &str = "KENT";
const TIMEOUT: Duration = Duration::from_secs(10);

fn secrets() -> PathBuf {
    std::env::var_os("JOINTOPS_TEST_SECRETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/secrets"))
}

const START: &str = "These tests need the real secure broker: run tests/run.sh, or \
    `KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh start` first (JOINTOPS_TEST_SECRETS for another secrets folder).";

/// A principal's properties file, and its settings as a client config.
fn principal(name: &str) -> (PathBuf, String, ClientConfig) {
    let path = secrets().join(format!("{name}.properties"));
    let (settings, bootstrap) = jointops::config::read_properties(&path).unwrap_or_else(|e| panic!("{e:#}. {START}"));
    let bootstrap = bootstrap.unwrap_or_else(|| panic!("{} names no bootstrap.servers", path.display()));
    let config = jointops::kafka::client_config(&bootstrap, &[], &settings);
    (path, bootstrap, config)
}

/// The hub's client, once the secure broker has answered it: a test that
/// needs the broker fails here, loudly, when it is missing.
fn require_secure_broker() -> (String, ClientConfig) {
    let (_, bootstrap, hub) = principal("hub");
    let consumer: BaseConsumer = hub.create().expect("client");
    if let Err(e) = consumer.fetch_metadata(Some(TOPIC), TIMEOUT) {
        panic!("The secure broker at {bootstrap} does not answer the hub ({e}). {START}");
    }
    (bootstrap, hub)
}

fn producer(config: &ClientConfig) -> FutureProducer {
    let mut c = config.clone();
    for (k, v) in jointops::kafka::PRODUCER_DEFAULTS {
        c.set(*k, *v);
    }
    c.set("message.timeout.ms", "15000").create().expect("producer")
}

async fn send(p: &FutureProducer, topic: &str) -> Result<(i32, i64), KafkaError> {
    let key = unique("secure-test");
    let record = FutureRecord::to(topic).key(&key).payload("not an event: the hub dead-letters it");
    p.send(record, TIMEOUT).await.map(|d| (d.partition, d.offset)).map_err(|(e, _)| e)
}

/// Polls `consumer` until a message or an error.
fn first_poll(consumer: &BaseConsumer) -> Result<Vec<u8>, KafkaError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "neither a message nor an error within 30 s");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => return Ok(m.key().unwrap_or_default().to_vec()),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
}

/// A consumer of one partition from `offset` (assigned: it does not join
/// the group, where a rollup may be).
fn reader(config: &ClientConfig, partition: i32, offset: Offset) -> BaseConsumer {
    let consumer: BaseConsumer =
        config.clone().set("group.id", GROUP).set("enable.auto.commit", "false").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, partition, offset).unwrap();
    consumer.assign(&tpl).unwrap();
    consumer
}

/// The hub's group's committed offset of `partition`: Describe on the
/// group, without joining it (a rollup may be in it).
fn group_offsets(config: &ClientConfig, partition: i32) -> Result<TopicPartitionList, KafkaError> {
    let consumer: BaseConsumer =
        config.clone().set("group.id", GROUP).set("enable.auto.commit", "false").create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(TOPIC, partition);
    consumer.committed_offsets(tpl, TIMEOUT)
}

fn code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

#[test]
fn a_client_without_credentials_or_with_a_wrong_password_is_refused() {
    let (bootstrap, hub) = require_secure_broker();
    let ca = secrets().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let plaintext = ClientConfig::new().set("bootstrap.servers", &bootstrap).clone();
    let tls_only = plaintext.clone().set("security.protocol", "SSL").set("ssl.ca.location", ca).clone();
    let wrong_password = hub.clone().set("sasl.password", "not-the-password").clone();
    for (what, config) in
        [("plaintext", plaintext), ("TLS without SASL", tls_only), ("a wrong password", wrong_password)]
    {
        let consumer: BaseConsumer = config.create().expect("client");
        let answer = consumer.fetch_metadata(None, Duration::from_secs(5));
        assert!(answer.is_err(), "a client with {what} was let in: {:?}", answer.map(|m| m.topics().len()));
    }
    let consumer: BaseConsumer = hub.create().expect("client");
    assert!(consumer.fetch_metadata(None, TIMEOUT).is_ok(), "the hub's own credentials work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_may_write_the_input_topic_and_nothing_else() {
    require_secure_broker();
    let (_, _, force) = principal(FORCE);
    let p = producer(&force);
    let (partition, offset) = send(&p, TOPIC).await.expect("a force writes the input topic");
    let e = send(&p, DLQ).await.expect_err("a force must not write the dead-letter topic");
    assert_eq!(code(&e), Some(RDKafkaErrorCode::TopicAuthorizationFailed), "{e}");

    // Both refusals reach the consumer as errors (librdkafka keeps retrying
    // a refused group lookup rather than failing a committed-offsets call).
    let consumer = reader(&force, partition, Offset::Offset(offset));
    let (mut topic_refused, mut group_refused) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(topic_refused && group_refused) {
        assert!(Instant::now() < deadline, "refused the topic: {topic_refused}, the group: {group_refused}, in 30 s");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => panic!("a force read the input topic (partition {}, offset {})", m.partition(), m.offset()),
            Some(Err(e)) => match code(&e) {
                Some(RDKafkaErrorCode::TopicAuthorizationFailed) => topic_refused = true,
                Some(RDKafkaErrorCode::GroupAuthorizationFailed) => group_refused = true,
                _ => panic!("not a refusal: {e}"),
            },
            None => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_may_read_the_input_topic_in_its_group_and_write_dead_letters() {
    let (_, hub) = require_secure_broker();
    let (_, _, force) = principal(FORCE);
    let (partition, offset) = send(&producer(&force), TOPIC).await.expect("a force writes the input topic");
    send(&producer(&hub), DLQ).await.expect("the hub writes the dead-letter topic");

    let consumer = reader(&hub, partition, Offset::Offset(offset));
    first_poll(&consumer).expect("the hub reads the input topic");
    group_offsets(&hub, partition).expect("the hub may use its group");
    let e = send(&producer(&hub), "jointops.not-the-hubs").await.expect_err("the hub writes no other topic");
    assert_eq!(code(&e), Some(RDKafkaErrorCode::TopicAuthorizationFailed), "{e}");
}

/// Raw references of the second export: what must never leave the agent.
const RAW_LINE: &str = "07700 900461";
const RAW_PERSON: &str = "KNT/PER/7731";
const SECRET: &str = "secure-test-secret";

/// `jointops rollup` and `jointops agent publish`, each with its principal's
/// properties file and nothing else about the broker in its config, and the
/// agent signing with a key from `jointops keys generate` that the hub
/// requires: the whole of contract §7 on one path. The topic's bytes then
/// hold neither a raw reference nor the secret, and every record is signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_and_the_hub_count_through_the_secure_broker_with_the_properties_files() {
    require_secure_broker();
    let dir = tempfile::tempdir().unwrap();
    let op = unique("SEC");
    let (hub_props, _, _) = principal("hub");
    let (force_props, _, _) = principal(FORCE);
    let window = "starts = \"2023-10-01T00:00:00Z\"\nends = \"2023-11-01T00:00:00Z\"";
    let key_id = format!("{FORCE}-{}", op.replace(':', "-"));
    let generated = Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["keys", "generate", "--force", FORCE, "--id", &key_id, "--out"])
        .arg(dir.path().join("kent.key"))
        .output()
        .expect("the binary runs");
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let trust = format!("[trust]\nrequire_signatures = true\n{}", String::from_utf8_lossy(&generated.stdout));
    let hub_cfg = dir.path().join("hub.toml");
    std::fs::write(
        &hub_cfg,
        format!(
            "[kafka]\nproperties = {hub_props:?}\n[store]\npath = \"hub.sqlite\"\n[rollup]\nbatch_ms = 50\n{trust}\n\
             [[operations]]\nid = \"{op}\"\n{window}\nforces = [\"{FORCE}\"]\n"
        ),
    )
    .unwrap();
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "force = \"{FORCE}\"\nstate_dir = \"state\"\nsigning_key = \"kent.key\"\n[kafka]\nproperties = {force_props:?}\n\
             [operations.sec]\nid = \"{op}\"\n"
        ),
    )
    .unwrap();
    let export = synthetic_export(&op, 40, 0);
    let export_file = dir.path().join("export.csv");
    std::fs::write(&export_file, &export.csv).unwrap();
    let refs_file = dir.path().join("refs.csv");
    std::fs::write(
        &refs_file,
        format!(
            "record_id,kind,operation,occurred_at,joint_ref\n\
             L1,line_closure,{op},2023-10-11T10:00:00Z,{RAW_LINE}\n\
             S1,safeguarding,{op},2023-10-11T11:00:00Z,{RAW_PERSON}\n"
        ),
    )
    .unwrap();

    let log = std::fs::File::create(dir.path().join("rollup.log")).unwrap();
    let mut rollup = Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["rollup", "--config"])
        .arg(&hub_cfg)
        .stdin(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the binary runs");
    let out = Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["agent", "publish", "--no-progress", "--config"])
        .arg(&agent_cfg)
        .arg(&export_file)
        .arg(&refs_file)
        .env("JOINTOPS__OPERATIONS__SEC__SECRET", SECRET)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "agent publish: {}", String::from_utf8_lossy(&out.stderr));

    let store = dir.path().join("hub.sqlite");
    let counted = || {
        use jointops::store::TotalsReader;
        let totals = jointops::store::SqliteStore::open_read(&store).ok().and_then(|s| s.totals(&op).ok().flatten());
        totals.is_some_and(|t| {
            t.joint.get("people_engaged") == Some(export.people_engaged)
                && t.joint.get("arrests") == Some(export.arrests)
                && t.joint.get("lines_closed") == Some(1)
        })
    };
    // Until counted, or the deadline, or the rollup ends: then it is stopped either way.
    let deadline = Instant::now() + Duration::from_secs(90);
    let outcome = loop {
        if counted() {
            break Ok(());
        }
        if let Some(status) = rollup.try_wait().unwrap() {
            break Err(format!("the rollup exited ({status})"));
        }
        if Instant::now() > deadline {
            break Err("not within 90 s".to_string());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    rollup.kill().ok();
    rollup.wait().ok();
    let log = std::fs::read_to_string(dir.path().join("rollup.log")).unwrap_or_default();
    if let Err(why) = outcome {
        panic!("the hub did not count the {} rows {FORCE} published: {why}; the rollup's log:\n{log}", export.rows);
    }
    let agent_log = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let records = records_of(&op);
    assert_eq!(records.len(), export.rows + 2, "every row, once");
    for (what, bytes) in [("the rollup's log", log.as_bytes()), ("the agent's log", agent_log.as_bytes())]
        .into_iter()
        .chain(records.iter().map(|r| ("a record on the topic", r.as_slice())))
    {
        for secret in [RAW_LINE, "07700900461", RAW_PERSON, SECRET] {
            assert!(!contains(bytes, secret.as_bytes()), "{what} holds {secret:?}");
        }
    }
}

/// Every record of `operation` on the input topic, key, value and headers
/// together, read as the admin (the only principal that may); each one
/// signed with both headers.
fn records_of(operation: &str) -> Vec<Vec<u8>> {
    use rdkafka::message::Headers;
    let (_, _, admin) = principal("admin");
    let consumer: BaseConsumer = admin.clone().set("group.id", unique("admin-read")).create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for p in 0..6 {
        let (_, high) = consumer.fetch_watermarks(TOPIC, p, TIMEOUT).expect("watermarks");
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning).unwrap();
        ends.push(high);
    }
    consumer.assign(&tpl).unwrap();
    let (mut records, mut at) = (Vec::new(), vec![0i64; 6]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while (0..6).any(|p| at[p] < ends[p] && ends[p] > 0) {
        assert!(Instant::now() < deadline, "the topic not read to its end within 60 s");
        let Some(m) = consumer.poll(Duration::from_millis(200)) else { continue };
        let m = m.expect("a record");
        at[m.partition() as usize] = m.offset() + 1;
        if !m.key().unwrap_or_default().starts_with(format!("{operation}/").as_bytes()) {
            continue;
        }
        let headers = m.headers().expect("signed records have headers");
        let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert!(names.contains(&"jointops-key-id") && names.contains(&"jointops-signature"), "{names:?}");
        let mut bytes = [m.key().unwrap_or_default(), m.payload().unwrap_or_default()].concat();
        headers.iter().for_each(|h| bytes.extend_from_slice(h.value.unwrap_or_default()));
        records.push(bytes);
    }
    records
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The KRaft controller's listener answers only a client with a certificate
/// of the local CA (the broker's): mutual TLS. `openssl s_client` sends
/// ApiVersions, which a Kafka listener answers before anything else.
#[test]
fn the_controller_listener_answers_only_a_client_with_a_certificate() {
    use std::io::{Read, Write};
    require_secure_broker();
    let controller = std::env::var("JOINTOPS_TEST_SECURE_CONTROLLER").unwrap_or_else(|_| "127.0.0.1:10093".to_string());
    let s = secrets();
    let answer = |with_cert: bool| -> Vec<u8> {
        // timeout(1): a listener that never answers fails the test, not hangs it.
        let mut cmd = Command::new("timeout");
        cmd.args(["10", "openssl", "s_client", "-quiet", "-connect", &controller, "-CAfile"]).arg(s.join("ca.pem"));
        if with_cert {
            cmd.arg("-cert").arg(s.join("broker.pem")).arg("-key").arg(s.join("broker.key"));
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl runs (tests/run.sh installs it)");
        // size 10 | ApiVersions v0 | correlation id "join" | no client id
        let probe = b"\x00\x00\x00\x0a\x00\x12\x00\x00join\xff\xff";
        child.stdin.as_mut().unwrap().write_all(probe).unwrap();
        let mut header = vec![0u8; 10];
        let mut got = 0;
        let mut out = child.stdout.take().unwrap();
        while got < header.len() {
            match out.read(&mut header[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        child.kill().ok();
        child.wait().ok();
        header.truncate(got);
        header
    };
    assert!(answer(false).is_empty(), "the controller answered a client without a certificate");
    let header = answer(true);
    assert_eq!(header.get(4..10), Some(&b"join\x00\x00"[..]), "the broker's certificate: {header:?}");
}
