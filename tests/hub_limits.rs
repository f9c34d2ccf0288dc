//! The hub at its limits, on the real broker: records as large as the broker
//! takes, joint outcomes of 100,000 reports, and a `serve --rollup` whose
//! rollup dies.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use jointops::domain::{Outcome, OutcomeEvent, SeizureItem};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

const T: i64 = 1_696_900_000_000; // 2023-10-10T01:06:40Z

/// One dead letter as read back: key, value and headers in order.
type Read = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Vec<u8>)>);

fn read_topic(bootstrap: &str, topic: &str, want: usize) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "10000000")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < want {
        assert!(Instant::now() < deadline, "only {} of {want} records on {topic}", seen.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                .unwrap_or_default();
            seen.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec), headers));
        }
    }
    seen
}

fn header<'a>(r: &'a Read, name: &str) -> Option<&'a str> {
    r.2.iter().find(|(k, _)| k == name).map(|(_, v)| std::str::from_utf8(v).unwrap())
}

/// Regression: a ~1,000,000-byte record was dead-lettered with the hub's
/// headers added, the producer refused it as too large, the send was retried
/// for ever, and nothing behind it on the partition was counted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_as_large_as_the_broker_takes_are_dead_lettered_and_the_partition_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let hub = op1_hub(dir.path()).await;
    let good = op1_arrest("MPS", "after-the-big-ones");
    let key = good.identity_key();
    // The same key as the valid event: the same partition, before it.
    let big: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &hub.kafka.bootstrap)
        .set("message.max.bytes", "3000000")
        .set("partitioner", "murmur2_random")
        .create()
        .unwrap();
    let send = |value: Vec<u8>, headers: OwnedHeaders| {
        let (big, topic, key) = (&big, hub.kafka.topic.clone(), key.clone());
        async move {
            let r = FutureRecord::<str, [u8]>::to(&topic).key(&key).payload(&value).headers(headers);
            big.send(r, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("the broker takes it");
        }
    };
    let value_bytes = 1_000_000;
    send(vec![0xAB; value_bytes], OwnedHeaders::new()).await;
    let mut heavy = OwnedHeaders::new();
    for i in 0..10 {
        heavy = heavy.insert(Header { key: &format!("h{i}"), value: Some(&vec![b'x'; 100_000]) });
    }
    send(b"small".to_vec(), heavy).await;
    // A sender's own `jointops-error` never stands before the hub's.
    let forged = OwnedHeaders::new()
        .insert(Header { key: "jointops-error", value: Some(b"counted") })
        .insert(Header { key: "jointops-source-offset", value: Some(b"0") });
    send(b"forged".to_vec(), forged).await;
    let producer = producer(&hub.kafka.bootstrap);
    send_events(&producer, &hub.kafka.topic, std::slice::from_ref(&good)).await;

    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(60)).await;
    rollup.stop().await;
    assert_eq!(totals(&hub, "OP-1").joint.arrests, 1, "the event behind the large records counts");
    assert_eq!(dead_letters(&hub), BTreeMap::from([("undecodable".to_string(), 3)]));

    let dlq = read_topic(&hub.kafka.bootstrap, &hub.kafka.dlq_topic, 3);
    let large = dlq
        .iter()
        .find(|r| header(r, "jointops-original-bytes").is_some_and(|n| n.parse::<usize>().unwrap() > value_bytes))
        .unwrap();
    assert_eq!(header(large, "jointops-omitted"), Some("value"));
    assert_eq!(large.1, None, "the value is left out");
    assert_eq!(large.0.as_deref(), Some(key.as_bytes()), "the key stays");
    let heavy = dlq.iter().find(|r| header(r, "jointops-omitted") == Some("value,headers")).expect("headers left out");
    assert!(header(heavy, "h0").is_none());
    for r in &dlq {
        assert_eq!(header(r, "jointops-error"), Some("undecodable"));
        assert_eq!(header(r, "jointops-source-topic"), Some(hub.kafka.topic.as_str()));
        assert!(header(r, "jointops-source-offset").is_some());
    }
    let forged = dlq.iter().find(|r| r.1.as_deref() == Some(b"forged".as_slice())).unwrap();
    let names: Vec<&str> = forged.2.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "jointops-error").count(), 1, "{names:?}");
    assert_eq!(names[0], "jointops-error", "the hub's headers come first: {names:?}");
    assert_eq!(header(forged, "sender-jointops-error"), Some("counted"));
    assert_eq!(header(forged, "jointops-source-offset"), Some("2"));
}

fn seizure(force: &str, i: i64, joint_ref: Option<&str>) -> OutcomeEvent {
    OutcomeEvent {
        event_id: format!("{force}-{i}"),
        revision: 1,
        force: force.into(),
        operation: "OP-1".into(),
        occurred_at: T,
        reported_at: T + 60_000 + i % 5000,
        withdrawn: false,
        joint_ref: joint_ref.map(str::to_string),
        outcome: Outcome::Seizure { item: SeizureItem::DrugClassA, quantity: 1 + i, provisional: false },
    }
}

/// Regression: the lead of a joint outcome was found by walking all its
/// reports on every apply (quadratic: 20,000 reports of one `joint_ref` took
/// 83 s), so a placeholder reference on every row stalled the hub and its
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_reports_of_one_outcome_count_once_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hub = op1_hub(dir.path()).await;
    let n = 100_000i64;
    let events: Vec<OutcomeEvent> =
        (0..n).map(|i| seizure(if i % 2 == 0 { "MPS" } else { "KENT" }, i, Some("n-a"))).collect();
    send_events(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &events).await;
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(300)).await;
    rollup.stop().await;

    // Lead: the latest reported_at (i % 5000 == 4999: odd, so KENT), then
    // the smallest event_id in byte order.
    let lead = (0..n).filter(|i| i % 5000 == 4999).min_by_key(|i| format!("KENT-{i}")).unwrap();
    let check = |what: &str| {
        let t = totals(&hub, "OP-1");
        assert_eq!((t.joint.drugs_class_a_mg, t.joint.joint_outcomes), (lead + 1, 1), "{what}");
        assert_eq!(t.forces.keys().collect::<Vec<_>>(), ["KENT", "MPS"], "{what}");
    };
    check("after catch-up");
    // A restart loads all 100,000 reports into one outcome again, then
    // counts a withdrawal of the lead.
    let mut w = seizure("KENT", lead, Some("n-a"));
    w.revision = 2;
    w.withdrawn = true;
    send_events(&producer(&hub.kafka.bootstrap), &hub.kafka.topic, &[w]).await;
    let rollup = RunningRollup::start(&hub).await;
    wait_caught_up(&hub, Duration::from_secs(120)).await;
    rollup.stop().await;
    let next = (0..n).filter(|i| i % 5000 == 4999 && *i != lead).min_by_key(|i| format!("KENT-{i}")).unwrap();
    assert_eq!(totals(&hub, "OP-1").joint.drugs_class_a_mg, next + 1, "the next report leads");
}

/// Regression: under `serve --rollup`, a rollup that stopped with an error
/// left the API running, serving the frozen figures of a dead rollup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_rollup_exits_non_zero_when_its_rollup_dies() {
    let dir = tempfile::tempdir().unwrap();
    let hub = hub(dir.path(), vec![]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = write_hub_config(dir.path(), &hub, port);
    // Another writer holds the store: the rollup half fails at its start.
    let lock = std::fs::File::create(dir.path().join("hub.sqlite.lock")).unwrap();
    lock.lock().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jointops"))
        .args(["serve", "--rollup", "--config"])
        .arg(&config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve --rollup kept running after its rollup stopped");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{status:?}");
    assert!(stderr.contains("another rollup is writing"), "{stderr}");
}
