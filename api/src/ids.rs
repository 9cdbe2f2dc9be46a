//! Ids the API derives from what it was sent, so that a retry gets the same one: order ids,
//! event ids, and the digest that tells a retry from a reused idempotency key.

use sha2::{Digest, Sha256};

/// A stable id from `seed`: `prefix` + 24 hex digits of its SHA-256.
pub fn derived_id(prefix: &str, seed: &str) -> String {
    format!("{prefix}{}", &hex::encode(Sha256::digest(seed.as_bytes()))[..24])
}

/// A stable UUID (v4 layout) from `seed`, for event ids that must repeat on retries.
pub fn derived_uuid(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
}

/// SHA-256 of a request body, to tell a retry from a reused idempotency key.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_uuids_parse() {
        assert_eq!(derived_id("ord_", "x"), derived_id("ord_", "x"));
        assert_ne!(derived_id("ord_", "x"), derived_id("ord_", "y"));
        assert!(uuid::Uuid::parse_str(&derived_uuid("x")).is_ok());
    }
}
