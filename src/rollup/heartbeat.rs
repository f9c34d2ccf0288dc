//! The rollup's sign of life for readers: every [`EVERY`] the consume loop
//! writes a heartbeat with its lag behind the input topic. The topic's ends
//! are fetched on a thread of their own: a broker that does not answer must
//! not hold up counting, and then the lag is unknown rather than stale.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;

use crate::config::HubSettings;
use crate::kafka;

/// How often the loop writes a heartbeat. Readers call a rollup stopped
/// after a few missed ones (`api::status::STALE_AFTER_MS`).
pub const EVERY: Duration = Duration::from_secs(2);

/// Ends older than this are not used: the lag is then unknown.
const ENDS_FRESH_FOR: Duration = Duration::from_secs(10);

type Latest = Arc<Mutex<Option<(Instant, BTreeMap<i32, i64>)>>>;

/// The input topic's ends, kept fresh by a thread until this is dropped.
pub struct Ends {
    latest: Latest,
    stop: Arc<AtomicBool>,
}

impl Ends {
    pub fn watch(settings: &HubSettings) -> anyhow::Result<Ends> {
        let k = &settings.kafka;
        let consumer: BaseConsumer = kafka::client_config(&k.bootstrap, &[], &k.librdkafka).create()?;
        let (latest, stop): (Latest, _) = (Arc::default(), Arc::new(AtomicBool::new(false)));
        let (l, s, topic) = (latest.clone(), stop.clone(), k.topic.clone());
        std::thread::Builder::new().name("topic-ends".into()).spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(high) = kafka::high_watermarks(&consumer, &topic) {
                    *l.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), high));
                }
                // The interval between two fetches, in short steps so that
                // a stopping rollup does not wait for it.
                let next = Instant::now() + EVERY;
                while Instant::now() < next && !s.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })?;
        Ok(Ends { latest, stop })
    }

    /// Records on each partition past `next` (its next offset to read),
    /// if the ends are fresh.
    pub fn lags(&self, next: &BTreeMap<i32, i64>) -> Option<BTreeMap<i32, i64>> {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let (_, high) = latest.as_ref().filter(|(at, _)| at.elapsed() < ENDS_FRESH_FOR)?;
        Some(lags_of(high, next))
    }
}

impl Drop for Ends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn lags_of(high: &BTreeMap<i32, i64>, next: &BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
    high.iter().map(|(&p, &h)| (p, (h - next.get(&p).copied().unwrap_or(0)).max(0))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_each_partitions_unread_records_and_never_goes_negative() {
        let high = BTreeMap::from([(0, 10), (1, 5), (2, 7)]);
        let next = BTreeMap::from([(0, 4), (1, 9)]);
        assert_eq!(
            lags_of(&high, &next),
            BTreeMap::from([(0, 6), (1, 0), (2, 7)]),
            "partition 1 read past a stale end counts 0"
        );
    }
}
