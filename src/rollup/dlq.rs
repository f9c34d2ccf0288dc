//! Dead-letter records: the original key, value and headers, plus the
//! contract's `jointops-*` headers naming the reason and the source.

use futures::stream::{FuturesUnordered, TryStreamExt};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::store::DeadLetter;

/// A copy of what arrived, kept until the dead letter is acknowledged.
pub struct Original {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Original {
    pub fn of(msg: &BorrowedMessage<'_>) -> Self {
        let headers = msg
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        Original { key: msg.key().map(<[u8]>::to_vec), value: msg.payload().map(<[u8]>::to_vec), headers }
    }
}

fn headers(d: &DeadLetter, o: &Original) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(o.headers.len() + 5);
    for (key, value) in &o.headers {
        h = h.insert(Header { key, value: value.as_deref() });
    }
    let partition = d.partition.to_string();
    let offset = d.offset.to_string();
    for (key, value) in [
        ("jointops-error", d.reason.as_str()),
        ("jointops-error-detail", d.detail.as_str()),
        ("jointops-source-topic", d.topic.as_str()),
        ("jointops-source-partition", partition.as_str()),
        ("jointops-source-offset", offset.as_str()),
    ] {
        h = h.insert(Header { key, value: Some(value.as_bytes()) });
    }
    h
}

async fn send_one(producer: &FutureProducer, topic: &str, d: &DeadLetter, o: &Original) -> anyhow::Result<()> {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers(d, o));
    if let Some(k) = &o.key {
        record = record.key(k.as_slice());
    }
    if let Some(v) = &o.value {
        record = record.payload(v.as_slice());
    }
    producer.send(record, std::time::Duration::from_secs(60)).await.map(|_| ()).map_err(|(e, _)| {
        anyhow::anyhow!("dead letter for {}/{}/{} not acknowledged: {e}", d.topic, d.partition, d.offset)
    })
}

/// Sends every dead letter (a batch's worth at most) and waits until Kafka
/// has them all.
pub async fn send_all(producer: &FutureProducer, topic: &str, dead: &[(DeadLetter, Original)]) -> anyhow::Result<()> {
    let sends: FuturesUnordered<_> = dead.iter().map(|(d, o)| send_one(producer, topic, d, o)).collect();
    sends.try_collect::<Vec<()>>().await?;
    Ok(())
}
