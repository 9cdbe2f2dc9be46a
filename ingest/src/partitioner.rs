//! Kafka's default partitioner for keyed records, so a key lands on the same partition on
//! the embedded log and on Kafka: `(murmur2(key) & 0x7fffffff) % partitions`, with the
//! seed and the positive mask of the Java client.

/// The partition of `key` among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0);
    (murmur2::murmur2(key, murmur2::KAFKA_SEED) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2` (the Java client's values).
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&str, i32); 7] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
            ("", 275646681),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2::murmur2(input.as_bytes(), murmur2::KAFKA_SEED) as i32, expected, "{input}");
        }
    }

    #[test]
    fn keys_spread_over_every_partition_and_stay_put() {
        let mut seen = [0u32; 4];
        for i in 0..1000 {
            let k = format!("order-{i}");
            let p = partition_for_key(k.as_bytes(), 4);
            assert_eq!(p, partition_for_key(k.as_bytes(), 4));
            seen[p as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 150), "{seen:?}");
    }
}
