//! Dead-letter records: the original key, value and headers, plus the
//! contract's `jointops-*` headers naming the reason and the source.
//!
//! A dead letter always fits: an original near the broker's limit would not
//! fit again with the hub's headers added, and a dead letter the producer
//! refuses must never hold up the partition behind it. So the parts that do
//! not fit are left out (value first, then the original headers, then the
//! key), `jointops-omitted` says which, and the source headers still lead to
//! the original on the input topic (and in the store).

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::{error, warn};

use crate::store::{DeadLetter, Original, Position};

/// The hub's own headers on a dead letter; a sender's headers of these names
/// are kept renamed (`sender-…`), so that they never pass for the hub's.
const HUB_HEADERS: &[&str] = &[
    "jointops-error",
    "jointops-error-detail",
    "jointops-source-topic",
    "jointops-source-partition",
    "jointops-source-offset",
    "jointops-omitted",
    "jointops-original-bytes",
];

/// The longest `jointops-error-detail` sent (details quote input).
const MAX_DETAIL: usize = 1024;

/// Room left under the producer's limit for the record's own framing.
const FRAMING: usize = 1024;

/// librdkafka's default `message.max.bytes`.
pub const DEFAULT_MAX_BYTES: usize = 1_000_000;

/// The producer's `message.max.bytes`: a dead letter must fit under it.
pub fn max_bytes(librdkafka: &std::collections::BTreeMap<String, String>) -> usize {
    librdkafka.get("message.max.bytes").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_BYTES)
}

/// Which parts of the original a dead letter carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Keep {
    All,
    NoValue,
    NoValueNoHeaders,
    NoOriginal,
}

impl Keep {
    const STEPS: [Keep; 4] = [Keep::All, Keep::NoValue, Keep::NoValueNoHeaders, Keep::NoOriginal];

    fn omitted(self) -> &'static str {
        match self {
            Keep::All => "",
            Keep::NoValue => "value",
            Keep::NoValueNoHeaders => "value,headers",
            Keep::NoOriginal => "value,headers,key",
        }
    }
}

/// The dead letter as sent: the hub's headers first, then what is kept.
struct Shaped<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(String, Option<&'a [u8]>)>,
}

impl Shaped<'_> {
    /// Bytes on the wire, near enough: payloads plus a little per header.
    fn size(&self) -> usize {
        let h: usize = self.headers.iter().map(|(k, v)| k.len() + v.map_or(0, <[u8]>::len) + 8).sum();
        self.key.map_or(0, <[u8]>::len) + self.value.map_or(0, <[u8]>::len) + h
    }

    fn owned_headers(&self) -> OwnedHeaders {
        let mut out = OwnedHeaders::new_with_capacity(self.headers.len());
        for (key, value) in &self.headers {
            out = out.insert(Header { key, value: *value });
        }
        out
    }
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn original_bytes(o: &Original) -> usize {
    let h: usize = o.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum();
    o.key.as_ref().map_or(0, Vec::len) + o.value.as_ref().map_or(0, Vec::len) + h
}

/// The text of the numeric headers, owned so that a shape can borrow them.
struct Numbers {
    partition: String,
    offset: String,
    original: String,
}

impl Numbers {
    fn of(d: &DeadLetter) -> Numbers {
        Numbers {
            partition: d.partition.to_string(),
            offset: d.offset.to_string(),
            original: original_bytes(&d.original).to_string(),
        }
    }
}

/// The dead letter with the parts `keep` says: the hub's headers first, so
/// that nothing the sender supplied stands before them.
fn shape<'a>(d: &'a DeadLetter, n: &'a Numbers, keep: Keep) -> Shaped<'a> {
    let o = &d.original;
    let mut headers: Vec<(String, Option<&[u8]>)> = vec![
        ("jointops-error".into(), Some(d.reason.as_bytes())),
        ("jointops-error-detail".into(), Some(cut(&d.detail, MAX_DETAIL).as_bytes())),
        ("jointops-source-topic".into(), Some(d.topic.as_bytes())),
        ("jointops-source-partition".into(), Some(n.partition.as_bytes())),
        ("jointops-source-offset".into(), Some(n.offset.as_bytes())),
    ];
    if keep != Keep::All {
        headers.push(("jointops-omitted".into(), Some(keep.omitted().as_bytes())));
        headers.push(("jointops-original-bytes".into(), Some(n.original.as_bytes())));
    }
    if keep < Keep::NoValueNoHeaders {
        for (key, value) in &o.headers {
            let name = if HUB_HEADERS.contains(&key.as_str()) { format!("sender-{key}") } else { key.clone() };
            headers.push((name, value.as_deref()));
        }
    }
    Shaped {
        key: o.key.as_deref().filter(|_| keep < Keep::NoOriginal),
        value: o.value.as_deref().filter(|_| keep == Keep::All),
        headers,
    }
}

/// The first step from `from` on that fits under `max_bytes` (the last
/// step, the hub's headers alone, always goes).
fn fitted<'a>(d: &'a DeadLetter, n: &'a Numbers, max_bytes: usize, from: Keep) -> (Keep, Shaped<'a>) {
    let budget = max_bytes.saturating_sub(FRAMING);
    let mut steps = Keep::STEPS.into_iter().filter(|k| *k >= from).peekable();
    loop {
        let keep = steps.next().expect("at least the last step");
        let s = shape(d, n, keep);
        if s.size() <= budget || steps.peek().is_none() {
            return (keep, s);
        }
    }
}

/// Refusals that concern this one record (its size or form), not the
/// broker's health: retrying the same bytes can never succeed.
fn refuses_the_record(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessageSize
                | C::InvalidMessage
                | C::InvalidRecord
                | C::MessageBatchTooLarge
                | C::BadMessage
        )
    )
}

/// How a dead letter went out.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    Whole,
    /// Without these parts of the original (`jointops-omitted`).
    Shrunk(&'static str),
    /// Refused even without the original: the store keeps it, unsent.
    Refused(Position),
}

async fn send_one(producer: &FutureProducer, topic: &str, d: &DeadLetter, max_bytes: usize) -> anyhow::Result<Sent> {
    let numbers = Numbers::of(d);
    let mut from = Keep::All;
    loop {
        let (keep, s) = fitted(d, &numbers, max_bytes, from);
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(s.owned_headers());
        if let Some(k) = s.key {
            record = record.key(k);
        }
        if let Some(v) = s.value {
            record = record.payload(v);
        }
        let position = || format!("{}/{}/{}", d.topic, d.partition, d.offset);
        match producer.send(record, std::time::Duration::from_secs(60)).await {
            Ok(_) if keep == Keep::All => return Ok(Sent::Whole),
            Ok(_) => {
                warn!(source = %position(), omitted = keep.omitted(), "Dead letter sent without parts of the original.");
                return Ok(Sent::Shrunk(keep.omitted()));
            }
            Err((e, _)) if refuses_the_record(&e) && keep != Keep::NoOriginal => {
                from = Keep::STEPS[Keep::STEPS.iter().position(|k| *k == keep).expect("a step") + 1];
            }
            Err((e, _)) if refuses_the_record(&e) => {
                error!(source = %position(), error = %e, "Dead letter refused by Kafka even without the original; kept in the store only.");
                return Ok(Sent::Refused((d.topic.clone(), d.partition, d.offset)));
            }
            Err((e, _)) => return Err(anyhow::anyhow!("dead letter for {} not acknowledged: {e}", position())),
        }
    }
}

/// Sends dead letters (a batch's worth) and waits until Kafka has them all.
/// An error means the broker did not answer (retry later); what Kafka
/// refused for its own sake comes back as [`Sent::Refused`], and the rest
/// goes on.
pub async fn send_all<'a>(
    producer: &FutureProducer,
    topic: &str,
    max_bytes: usize,
    dead: impl IntoIterator<Item = &'a DeadLetter>,
) -> anyhow::Result<Vec<Position>> {
    let mut sends: FuturesUnordered<_> = dead.into_iter().map(|d| send_one(producer, topic, d, max_bytes)).collect();
    let mut refused = Vec::new();
    while let Some(sent) = sends.next().await {
        if let Sent::Refused(p) = sent? {
            refused.push(p);
        }
    }
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(value: usize, headers: usize) -> DeadLetter {
        DeadLetter {
            topic: "in".into(),
            partition: 3,
            offset: 7,
            reason: "undecodable".into(),
            detail: "x".repeat(5000),
            force: None,
            event_id: None,
            operation: None,
            at: None,
            original: Original {
                key: Some(b"k".to_vec()),
                value: Some(vec![0; value]),
                headers: vec![
                    ("jointops-error".into(), Some(b"forged".to_vec())),
                    ("big".into(), Some(vec![1; headers])),
                ],
            },
            sent: true,
            replayed: false,
        }
    }

    fn names(s: &Shaped<'_>) -> Vec<String> {
        s.headers.iter().map(|(k, _)| k.clone()).collect()
    }

    #[test]
    fn a_dead_letter_that_fits_keeps_everything_with_the_hubs_headers_first() {
        let d = dead(10, 10);
        let n = Numbers::of(&d);
        let (keep, s) = fitted(&d, &n, DEFAULT_MAX_BYTES, Keep::All);
        assert_eq!(keep, Keep::All);
        assert_eq!(s.value.map(<[u8]>::len), Some(10));
        assert_eq!(
            names(&s),
            [
                "jointops-error",
                "jointops-error-detail",
                "jointops-source-topic",
                "jointops-source-partition",
                "jointops-source-offset",
                "sender-jointops-error",
                "big"
            ]
        );
        assert_eq!(s.headers[1].1.unwrap().len(), MAX_DETAIL, "the detail is cut");
    }

    #[test]
    fn parts_that_do_not_fit_are_left_out_value_first_and_said() {
        let d = dead(DEFAULT_MAX_BYTES, 10);
        let n = Numbers::of(&d);
        let (keep, s) = fitted(&d, &n, DEFAULT_MAX_BYTES, Keep::All);
        assert_eq!(keep, Keep::NoValue);
        assert!(s.value.is_none() && s.key.is_some());
        let omitted = s.headers.iter().find(|(k, _)| k == "jointops-omitted").unwrap().1.unwrap();
        assert_eq!(omitted, b"value");
        assert!(s.size() <= DEFAULT_MAX_BYTES - FRAMING);

        let d = dead(10, DEFAULT_MAX_BYTES);
        let n = Numbers::of(&d);
        let (keep, s) = fitted(&d, &n, DEFAULT_MAX_BYTES, Keep::All);
        assert_eq!(keep, Keep::NoValueNoHeaders);
        assert!(!names(&s).contains(&"big".to_string()));
        assert_eq!(names(&s)[..5], HUB_HEADERS[..5]);
    }
}
