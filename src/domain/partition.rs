//! Which partition a record belongs on (contract §3): the Java client's
//! default partitioner, `murmur2(key) & 0x7fffffff mod partitions`, so that
//! every report of one outcome meets on one partition whatever client sent it.

/// Java's `Utils.murmur2` (Kafka clients): MurmurHash2, 32 bits, seed
/// `0x9747b28c`, little-endian blocks.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // Java's switch falls through from the highest tail byte down.
        for (i, &byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition of `key` among `partitions` (at least 1).
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions >= 1, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Contract §8.
    #[test]
    fn the_contracts_partition_vectors_hold() {
        let vectors = [
            ("CLIW-2023-10/MPS/MPS-AR-0001", 2, 8),
            ("CLIW-2023-10/line_closure/3f1c0a9e5b7d2e4f6a8c0b1d3e5f7a9c", 5, 5),
            ("OP-X/KENT/K-1", 1, 1),
        ];
        for (key, of6, of12) in vectors {
            assert_eq!(partition_for(key.as_bytes(), 6), of6, "{key} of 6");
            assert_eq!(partition_for(key.as_bytes(), 12), of12, "{key} of 12");
        }
    }

    /// Values of Kafka's own `UtilsTest.testMurmur2`, covering every tail length.
    #[test]
    fn matches_the_java_clients_hash() {
        let cases: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ];
        for (key, java) in cases {
            assert_eq!(murmur2(key.as_bytes()) as i32, java, "{key}");
        }
    }

    #[test]
    fn one_partition_takes_every_key() {
        assert_eq!(partition_for(b"anything", 1), 0);
        assert_eq!(partition_for(b"", 1), 0);
    }
}
