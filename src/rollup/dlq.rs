//! Dead-letter records: the original key, value and headers, plus the
//! contract's `jointops-*` headers naming the reason and the source.

use futures::stream::{FuturesUnordered, TryStreamExt};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::store::{DeadLetter, Original};

/// A copy of what arrived, kept until the dead letter is acknowledged.
pub fn original_of(msg: &BorrowedMessage<'_>) -> Original {
    let headers = msg
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
        .unwrap_or_default();
    Original { key: msg.key().map(<[u8]>::to_vec), value: msg.payload().map(<[u8]>::to_vec), headers }
}

fn headers(d: &DeadLetter) -> OwnedHeaders {
    let o = &d.original;
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

async fn send_one(producer: &FutureProducer, topic: &str, d: &DeadLetter) -> anyhow::Result<()> {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers(d));
    if let Some(k) = &d.original.key {
        record = record.key(k.as_slice());
    }
    if let Some(v) = &d.original.value {
        record = record.payload(v.as_slice());
    }
    producer.send(record, std::time::Duration::from_secs(60)).await.map(|_| ()).map_err(|(e, _)| {
        anyhow::anyhow!("dead letter for {}/{}/{} not acknowledged: {e}", d.topic, d.partition, d.offset)
    })
}

/// Sends dead letters (a batch's worth) and waits until Kafka has them all.
pub async fn send_all<'a>(
    producer: &FutureProducer,
    topic: &str,
    dead: impl IntoIterator<Item = &'a DeadLetter>,
) -> anyhow::Result<()> {
    let sends: FuturesUnordered<_> = dead.into_iter().map(|d| send_one(producer, topic, d)).collect();
    sends.try_collect::<Vec<()>>().await?;
    Ok(())
}
