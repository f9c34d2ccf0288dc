//! The cost of signing and of verifying one event, for the README's figures
//! (`jointops keys bench`): a typical event's value and key, timed over many
//! rounds on this machine.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;

use super::{sign, KeyEntry, Keyring, SignatureHeaders};
use crate::codec::Registry;

/// Mean time per event: wall time, and this thread's CPU time where Linux
/// says (on a machine shared with other work the wall time includes waits).
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    pub events: usize,
    pub value_bytes: usize,
    pub sign: Duration,
    pub verify: Duration,
    pub sign_cpu: Option<Duration>,
    pub verify_cpu: Option<Duration>,
}

/// The calling thread's time on a CPU so far (Linux `schedstat`, in ns).
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

fn since(start: Option<Duration>) -> Option<Duration> {
    Some(thread_cpu()?.saturating_sub(start?))
}

/// Signs and verifies `events` distinct loadgen events (the hub's full
/// check: header lookup, keyring, signed bytes, strict verification).
pub fn measure(events: usize) -> Cost {
    let registry = Registry::builtin();
    let stream = crate::loadgen::generate(events.max(1), 7);
    let records: Vec<(Vec<u8>, Vec<u8>)> =
        stream.iter().take(events.max(1)).map(|e| (e.identity_key().into_bytes(), registry.encode(e))).collect();
    let key = SigningKey::from_bytes(&[7; 32]);
    let pk = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key.verifying_key().as_bytes());
    let entry = KeyEntry::parse("MPS", "BENCH-1", &pk, None, None, false).expect("a valid key");
    let ring = Keyring::new(true, [entry]).expect("one key");

    let (started, cpu) = (Instant::now(), thread_cpu());
    let signatures: Vec<[u8; 64]> = records.iter().map(|(k, v)| sign(&key, k, v)).collect();
    let (sign_total, sign_cpu) = (started.elapsed(), since(cpu));

    let (started, cpu) = (Instant::now(), thread_cpu());
    for ((k, v), s) in records.iter().zip(&signatures) {
        let h = SignatureHeaders { key_id: Some(b"BENCH-1"), signature: Some(s), repeated: false };
        std::hint::black_box(ring.verify(h, k, v).expect("verifies"));
    }
    let (verify_total, verify_cpu) = (started.elapsed(), since(cpu));
    let n = records.len() as u32;
    Cost {
        events: records.len(),
        value_bytes: records.iter().map(|(_, v)| v.len()).sum::<usize>() / records.len(),
        sign: sign_total / n,
        verify: verify_total / n,
        sign_cpu: sign_cpu.map(|d| d / n),
        verify_cpu: verify_cpu.map(|d| d / n),
    }
}
