//! Shared Kafka plumbing: client settings (raw librdkafka settings pass
//! through last, so ops can override anything), topic creation, watermarks.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;

pub const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A client config for `bootstrap`, with our defaults, then the raw settings.
pub fn client_config(bootstrap: &str, defaults: &[(&str, &str)], raw: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in raw {
        c.set(k, v);
    }
    c
}

/// The producer settings every jointops producer uses: no loss, no
/// reordering, and Java's partitioner, so that a third-party Java producer
/// puts the same identity key on the same partition as our agent does.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
    ("linger.ms", "5"),
    ("message.timeout.ms", "300000"),
];

/// How the hub's topics are made: from `[kafka]`.
#[derive(Clone, Copy, Debug)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i32,
    pub min_insync: i32,
}

impl TopicSpec {
    pub fn of(k: &crate::config::HubKafka) -> TopicSpec {
        TopicSpec { partitions: k.partitions, replication: k.replication_factor, min_insync: k.min_insync_replicas }
    }
}

/// The input topic is the system of record (a rebuild replays it from the
/// start): it keeps every record, for ever.
pub const INPUT_RETENTION_MS: &str = "-1";

/// Creates the input and dead-letter topics if they do not exist yet.
pub async fn ensure_topics(config: &ClientConfig, input: &str, dlq: &str, spec: TopicSpec) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let insync = spec.min_insync.to_string();
    let topic = |name| {
        NewTopic::new(name, spec.partitions, TopicReplication::Fixed(spec.replication))
            .set("min.insync.replicas", &insync)
    };
    let new = [topic(input).set("retention.ms", INPUT_RETENTION_MS), topic(dlq)];
    let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| tracing::error!(%topic, "Cannot create topic."))
            }
        }
    }
    Ok(())
}

/// What about the input topic does not fit `spec` and its role (never
/// deleting a record), as warnings for the log; `Err` says why its settings
/// could not be read (contract §7 gives the hub no DescribeConfigs ACL).
pub async fn input_topic_warnings(config: &ClientConfig, topic: &str, spec: TopicSpec) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let consumer = config.create::<BaseConsumer>().map_err(|e| e.to_string())?;
    if let Ok(md) = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
        let replicas = md.topics().iter().flat_map(|t| t.partitions()).map(|p| p.replicas().len()).min();
        if let Some(r) = replicas.filter(|&r| (r as i32) < spec.replication) {
            out.push(format!(
                "topic {topic} has {r} replica(s) per partition; kafka.replication_factor asks for {}",
                spec.replication
            ));
        }
    }
    let admin = config.create::<AdminClient<DefaultClientContext>>().map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
    let read = admin.describe_configs(&[rdkafka::admin::ResourceSpecifier::Topic(topic)], &opts).await;
    match read.as_deref() {
        Ok([Ok(res)]) => {
            let value = |name| res.get(name).and_then(|e| e.value.clone()).unwrap_or_default();
            if value("retention.ms") != INPUT_RETENTION_MS || value("retention.bytes") != "-1" {
                out.push(format!(
                    "topic {topic} deletes records (retention.ms={}, retention.bytes={}): it is the system of record, and a rebuild needs all of it; set both to -1",
                    value("retention.ms"),
                    value("retention.bytes")
                ));
            }
            if value("min.insync.replicas").parse::<i32>().unwrap_or(0) < spec.min_insync {
                out.push(format!(
                    "topic {topic} has min.insync.replicas={}; kafka.min_insync_replicas asks for {}",
                    value("min.insync.replicas"),
                    spec.min_insync
                ));
            }
        }
        Ok([Err(e)]) => return Err(format!("{e}")),
        Ok(other) => return Err(format!("{} answers", other.len())),
        Err(e) => return Err(e.to_string()),
    }
    Ok(out)
}

/// Whether every bootstrap host is this machine: a replication factor of 1
/// is fine there, nowhere else.
pub fn is_local(bootstrap: &str) -> bool {
    bootstrap.split(',').map(str::trim).all(|entry| {
        let bare = entry.split_once("://").map_or(entry, |(_, rest)| rest);
        let host = bare.rsplit_once(':').map_or(bare, |(h, _)| h);
        matches!(host.trim_matches(['[', ']']), "localhost" | "127.0.0.1" | "::1")
    })
}

/// The partitions of `topic` (metadata), waiting for them to exist.
pub fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let t = md.topics().iter().find(|t| t.name() == topic);
    match t {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
            Ok(t.partitions().iter().map(|p| p.id()).collect())
        }
        _ => Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition)),
    }
}

/// The high watermark (next offset to be written) of every partition.
pub fn high_watermarks(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>, KafkaError> {
    partitions(consumer, topic)?
        .into_iter()
        .map(|p| consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT).map(|(_, high)| (p, high)))
        .collect()
}
