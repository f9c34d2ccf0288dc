//! The ledger's two blob formats, pure: a *bucket* holds the records whose
//! ids hash to it, and a *batch* holds up to `BATCH` outbox messages. One
//! SQLite row per bucket or batch, instead of one per record and one per
//! message, is what makes a 200,000-row export a few thousand row writes:
//! SQLite's cost is per row, not per byte.
//!
//! Both start with a format byte, then entries of LEB128 lengths and
//! integers. A blob that does not parse is reported as corrupt, never
//! guessed at.

use super::{Entry, Outgoing};

/// Buckets in a ledger: about 50 records each at 200,000, so that a small
/// file rewrites a few kilobytes per record it changes.
pub const BUCKETS: u32 = 4096;
const BUCKET_FORMAT: u8 = 1;
const BATCH_FORMAT: u8 = 1;
/// A message's seq is its batch's seq times this, plus its index in the batch.
pub const PER_BATCH: i64 = 1 << 16;

/// The bucket of a record: FNV-1a of its id, a hash fixed forever (the
/// ledger's layout depends on it), modulo [`BUCKETS`].
pub fn bucket_of(record_id: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in record_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(BUCKETS)) as u32
}

pub fn batch_of(seq: i64) -> i64 {
    seq.div_euclid(PER_BATCH)
}

fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_int(out: &mut Vec<u8>, n: i64) {
    put_uint(out, ((n << 1) ^ (n >> 63)) as u64);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Reads a blob front to back; every read fails rather than run past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn uint(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.rest.split_first().ok_or("cut short in a number")?;
            self.rest = rest;
            n |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(n);
            }
        }
        Err("a number longer than 64 bits".into())
    }

    fn int(&mut self) -> Result<i64, String> {
        let z = self.uint()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.uint()?).map_err(|_| "a length out of range")?;
        if len > self.rest.len() {
            return Err(format!("a field of {len} bytes where {} are left", self.rest.len()));
        }
        let (b, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(b)
    }

    fn text(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "text that is not UTF-8".to_string())
    }

    fn format(&mut self, expected: u8, what: &str) -> Result<(), String> {
        match self.rest.split_first() {
            Some((&f, rest)) if f == expected => {
                self.rest = rest;
                Ok(())
            }
            Some((f, _)) => Err(format!("{what} in format {f}, which this agent does not know")),
            None => Err(format!("an empty {what}")),
        }
    }
}

/// A bucket's records, each once: record id, generation, revision,
/// reported_at, the event id when it is not the one the generation gives,
/// and the content.
pub fn encode_bucket<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Vec<u8> {
    let mut out = vec![BUCKET_FORMAT];
    for e in entries {
        put_bytes(&mut out, e.record_id.as_bytes());
        put_int(&mut out, e.generation);
        put_int(&mut out, i64::from(e.revision));
        put_int(&mut out, e.reported_at);
        if e.event_id == Entry::event_id_of(&e.record_id, e.generation) {
            out.push(0);
        } else {
            out.push(1);
            put_bytes(&mut out, e.event_id.as_bytes());
        }
        put_bytes(&mut out, &e.content);
    }
    out
}

pub fn decode_bucket(blob: &[u8]) -> Result<Vec<Entry>, String> {
    let mut r = Reader { rest: blob };
    r.format(BUCKET_FORMAT, "bucket")?;
    let mut entries = Vec::new();
    while !r.rest.is_empty() {
        let record_id = r.text()?;
        let generation = r.int()?;
        let revision = i32::try_from(r.int()?).map_err(|_| "a revision out of range")?;
        let reported_at = r.int()?;
        let event_id = match r.bytes_of_flag()? {
            false => Entry::event_id_of(&record_id, generation),
            true => r.text()?,
        };
        let content = r.bytes()?.to_vec();
        entries.push(Entry { record_id, event_id, generation, revision, reported_at, content });
    }
    Ok(entries)
}

impl Reader<'_> {
    fn bytes_of_flag(&mut self) -> Result<bool, String> {
        let (&f, rest) = self.rest.split_first().ok_or("cut short in a flag")?;
        self.rest = rest;
        match f {
            0 => Ok(false),
            1 => Ok(true),
            f => Err(format!("a flag of {f}")),
        }
    }
}

/// A batch's messages: index in the batch, key, value. The index stays with
/// a message when the batch is rewritten without the acknowledged ones.
pub fn encode_batch<'a>(messages: impl IntoIterator<Item = (u32, &'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = vec![BATCH_FORMAT];
    for (index, key, value) in messages {
        put_uint(&mut out, u64::from(index));
        put_bytes(&mut out, key.as_bytes());
        put_bytes(&mut out, value);
    }
    out
}

/// The messages of batch `seq`, each with its own seq.
pub fn decode_batch(seq: i64, blob: &[u8]) -> Result<Vec<Outgoing>, String> {
    let mut r = Reader { rest: blob };
    r.format(BATCH_FORMAT, "outbox batch")?;
    let mut messages = Vec::new();
    while !r.rest.is_empty() {
        let index = r.uint()?;
        if index >= PER_BATCH as u64 {
            return Err(format!("a message index of {index}"));
        }
        let key = r.text()?;
        let value = r.bytes()?.to_vec();
        messages.push(Outgoing { seq: seq * PER_BATCH + index as i64, key, value });
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, generation: i64) -> Entry {
        Entry {
            record_id: id.into(),
            event_id: Entry::event_id_of(id, generation),
            generation,
            revision: 218_322_000,
            reported_at: 1_764_622_800_000,
            content: vec![0, 1, 2, 0xff],
        }
    }

    #[test]
    fn a_bucket_gives_back_what_it_was_given() {
        let mut odd = entry("c", 1);
        odd.event_id = "not-derived".into();
        let entries = vec![entry("a", 1), entry("b-é", 3), odd, Entry { reported_at: -5, ..entry("d", 1) }];
        assert_eq!(decode_bucket(&encode_bucket(&entries)).unwrap(), entries);
        assert_eq!(decode_bucket(&encode_bucket(&[])).unwrap(), []);
    }

    #[test]
    fn a_damaged_blob_is_an_error_never_a_guess() {
        // Cut anywhere inside its one entry (a blob cut between entries is a shorter bucket).
        let blob = encode_bucket(&[entry("a", 1)]);
        for cut in 2..blob.len() {
            assert!(decode_bucket(&blob[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_bucket(&[9]).unwrap_err().contains("format 9"));
        let batch = encode_batch([(7, "k2", b"v".as_slice())]);
        for cut in 2..batch.len() {
            assert!(decode_batch(1, &batch[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_batch_keeps_each_message_seq() {
        let blob = encode_batch([(0, "OP/MPS/a", b"x".as_slice()), (5, "OP/MPS/b", b"yz".as_slice())]);
        let got = decode_batch(3, &blob).unwrap();
        let seqs: Vec<i64> = got.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, [3 * PER_BATCH, 3 * PER_BATCH + 5]);
        assert_eq!((got[1].key.as_str(), got[1].value.as_slice()), ("OP/MPS/b", b"yz".as_slice()));
        assert_eq!(batch_of(got[1].seq), 3);
    }

    /// The layout of every ledger depends on this hash: it must never change.
    #[test]
    fn the_bucket_hash_is_fixed() {
        assert_eq!([bucket_of(""), bucket_of("a"), bucket_of("MPS-AR-0001")], [805, 3212, 1649]);
    }
}
