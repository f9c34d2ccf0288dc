//! The hub's pure core alone, without Kafka or a store: the Avro codec
//! (encode and decode a value with its schema header) and the counting
//! engine (apply every event of a stream to an empty engine). The stream
//! is `loadgen`'s mixed shape, the one `deploy/local/bench.sh` publishes:
//! revisions, withdrawals, joint outcomes and repeats.
//!
//! `cargo bench --bench core`; the figures are per event, on one core.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jointops::codec::Registry;
use jointops::domain::{Engine, OutcomeEvent};

/// The binary's allocator (`src/main.rs`): with glibc's, half the engine's time went to malloc and free.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reports in the stream: about 2.2 events each.
const REPORTS: usize = 100_000;

fn stream() -> Vec<OutcomeEvent> {
    jointops::loadgen::generate(REPORTS, 1)
}

fn codec(c: &mut Criterion) {
    let events = stream();
    let registry = Registry::builtin();
    let values: Vec<Vec<u8>> = events.iter().map(|e| registry.encode(e)).collect();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(events.len() as u64)).sample_size(10);
    group.bench_function("encode", |b| {
        b.iter(|| events.iter().map(|e| registry.encode(e).len()).sum::<usize>());
    });
    group.bench_function("decode", |b| {
        b.iter(|| values.iter().map(|v| registry.decode(v).expect("a value it encoded").revision as i64).sum::<i64>());
    });
    group.finish();
}

fn engine(c: &mut Criterion) {
    let events = stream();
    let keys: Vec<String> = events.iter().map(OutcomeEvent::identity_key).collect();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(events.len() as u64)).sample_size(10);
    // As the rollup applies them: the key built once by the record step, the event borrowed.
    group.bench_function("apply_keyed", |b| {
        b.iter_batched(
            Engine::new,
            |mut engine| {
                for (event, key) in events.iter().zip(&keys) {
                    let _ = engine.apply_keyed(event, key);
                }
                engine.report_count()
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, codec, engine);
criterion_main!(benches);
