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

/// Creates the topics that do not exist yet.
pub async fn ensure_topics(config: &ClientConfig, topics: &[&str], partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
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
