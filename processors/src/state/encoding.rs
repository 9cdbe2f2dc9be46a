//! How state is laid out in a backend: keys are `<store>\0<key>`; values are an envelope (an
//! optional expiry) around postcard; times in keys sort as text.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::RuntimeError;

/// The full key of `key` in `store`.
pub fn full_key(store: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(store.len() + 1 + key.len());
    k.extend_from_slice(store.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Splits a full key into (store, key).
pub fn split_key(full: &[u8]) -> (&str, &str) {
    let at = full.iter().position(|b| *b == 0).unwrap_or(full.len());
    let store = std::str::from_utf8(&full[..at]).unwrap_or("");
    let key = full.get(at + 1..).map(|k| std::str::from_utf8(k).unwrap_or("")).unwrap_or("");
    (store, key)
}

/// Encodes a value with an optional expiry (stream time, ms).
pub fn encode_value<V: Serialize>(v: &V, expires: Option<i64>) -> Result<Vec<u8>, RuntimeError> {
    let mut out = Vec::with_capacity(32);
    match expires {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_be_bytes());
        }
        None => out.push(0),
    }
    postcard::to_extend(v, out).map_err(|e| RuntimeError::Store(format!("encoding a state value: {e}")))
}

/// The expiry of an encoded value.
pub fn expiry_of(bytes: &[u8]) -> Option<i64> {
    match bytes.first() {
        Some(1) if bytes.len() >= 9 => Some(i64::from_be_bytes(bytes[1..9].try_into().expect("8 bytes"))),
        _ => None,
    }
}

/// Decodes an encoded value.
pub fn decode_value<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, RuntimeError> {
    let body = match bytes.first() {
        Some(1) => bytes.get(9..).unwrap_or_default(),
        Some(0) => &bytes[1..],
        _ => return Err(RuntimeError::Store("an empty state value".into())),
    };
    postcard::from_bytes(body).map_err(|e| RuntimeError::Store(format!("decoding a state value: {e}")))
}

/// Reads a field added at the end of a stored struct (`#[serde(default, deserialize_with =
/// "added_at_end")]`): a value written before the field existed ends where the field would
/// start, and reads as the field's default. postcard reads a struct's fields by position and
/// `#[serde(default)]` alone does not help it (it fails at the end of the bytes); any other
/// error stays an error. Only for the last fields of the stored value's outermost struct:
/// anywhere else the next field's bytes would be misread as this one's.
pub fn added_at_end<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    match T::deserialize(d) {
        Err(e) if e.to_string() == postcard::Error::DeserializeUnexpectedEnd.to_string() => Ok(T::default()),
        other => other,
    }
}

/// Sortable text of a timestamp (negative times sort before positive ones).
pub(crate) fn time_key(t: i64) -> String {
    format!("{:020}", (t as u64) ^ (1 << 63))
}

/// The timestamp at the start of a key made with [`time_key`].
pub(crate) fn parse_time_key(s: &str) -> Option<i64> {
    s.get(..20)?.parse::<u64>().ok().map(|u| (u ^ (1 << 63)) as i64)
}
