//! The topics the hub creates are fit for their role on the real broker:
//! the input topic keeps every record for ever (it is the system of record
//! that a rebuild replays) with the configured `min.insync.replicas`, and
//! the rollup's start-up check names a topic that would delete records.

mod common;

use common::*;
use jointops::kafka::{ensure_topics, input_topic_warnings, is_local, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

fn config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", require_broker());
    c
}

async fn setting(topic: &str, name: &str) -> Option<String> {
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    let res = admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()).await.unwrap();
    res[0].as_ref().ok()?.get(name)?.value.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_input_topic_keeps_every_record_and_a_topic_that_deletes_is_named_at_start() {
    let (input, dlq) = (unique("topics.input"), unique("topics.dlq"));
    let spec = TopicSpec { partitions: 3, replication: 1, min_insync: 1 };
    ensure_topics(&config(), &input, &dlq, spec).await.unwrap();
    assert_eq!(setting(&input, "retention.ms").await.as_deref(), Some("-1"), "the system of record deletes nothing");
    assert_eq!(setting(&input, "min.insync.replicas").await.as_deref(), Some("1"));
    assert_ne!(
        setting(&dlq, "retention.ms").await.as_deref(),
        Some("-1"),
        "the dead-letter topic keeps the broker's default"
    );
    assert_eq!(input_topic_warnings(&config(), &input, spec).await, Ok(Vec::new()));

    // A topic made by someone else with the broker's defaults (7 days).
    let theirs = unique("topics.theirs");
    let admin: AdminClient<DefaultClientContext> = config().create().unwrap();
    admin.create_topics(&[NewTopic::new(&theirs, 3, TopicReplication::Fixed(1))], &AdminOptions::new()).await.unwrap();
    let warnings = input_topic_warnings(&config(), &theirs, spec).await.unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("deletes records") && w.contains("retention.ms=604800000")),
        "{warnings:?}"
    );
    let stricter = TopicSpec { partitions: 3, replication: 3, min_insync: 2 };
    let warnings = input_topic_warnings(&config(), &input, stricter).await.unwrap();
    assert!(warnings.iter().any(|w| w.contains("1 replica(s)") && w.contains("asks for 3")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("min.insync.replicas=1")), "{warnings:?}");
}

#[test]
fn only_a_loopback_bootstrap_is_local() {
    assert!(is_local("127.0.0.1:9092"));
    assert!(is_local("localhost:9092,[::1]:9093"));
    assert!(is_local("SASL_SSL://127.0.0.1:9093"));
    assert!(!is_local("127.0.0.1:9092,kafka-0.kafka:9093"));
    assert!(!is_local("broker.example:9092"));
}
