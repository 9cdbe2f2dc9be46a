//! The contract's decoders on hostile bytes, with the properties they must keep on any input:
//! what the fuzz targets in `fuzz/` call and what this crate's regression
//! tests replay. Each function panics exactly when a property breaks; an input refused with an
//! error is fine.

use std::path::Path;
use std::sync::OnceLock;

use crate::json::{self, FieldLimits, JsonOptions};
use crate::{Codec, Event};

fn codec() -> &'static Codec {
    static CODEC: OnceLock<Codec> = OnceLock::new();
    CODEC.get_or_init(|| Codec::embedded().expect("the embedded codec builds"))
}

/// An event written by [`Codec::encode`] decodes back equal, and its bytes say its type.
fn round_trips(event: &Event) {
    let bytes = codec().encode(event).expect("a decoded or validated event encodes");
    let back = codec().decode(&bytes).expect("an encoded event decodes");
    assert_eq!(&back, event, "Avro round trip changed the event");
    assert_eq!(codec().event_type_of(&bytes).expect("an encoded event has a type").name, event.event_type().name);
}

/// Confluent wire-format bytes as they come off a topic: decoding never panics, and what
/// decodes and passes [`Event::check`] encodes back to an equal event.
pub fn avro_decode(bytes: &[u8]) {
    let ty = codec().event_type_of(bytes).ok().map(|t| t.name);
    if let Ok(event) = codec().decode(bytes) {
        assert_eq!(ty, Some(event.event_type().name), "the schema id and the decoded type disagree");
        // What the contract refuses beyond the schema (a NaN weight) goes to a DLQ, not on.
        if event.check().is_ok() {
            round_trips(&event);
        }
    }
}

/// One event as an app sends it to `POST /v1/events`: the API's field limits, then the JSON →
/// Avro validator with the API's options. Whatever it accepts encodes, decodes back equal,
/// and reads back equal from the JSON a store keeps of it.
pub fn json_event(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else { return };
    if FieldLimits::default().check(&value).is_err() {
        return;
    }
    let opts = JsonOptions { fill_missing_ids: true, inputs_only: true };
    let Ok(event) = json::event_from_json(value, opts) else { return };
    round_trips(&event);
    let stored = json::event_from_stored_json(event.to_json()).expect("an accepted event reads back from its stored JSON");
    assert_eq!(stored, event, "stored JSON round trip changed the event");
}

/// Checks one committed seed input of a fuzz target (`fuzz/corpus/<target>/<name>`) holds
/// `bytes`; with `STOREFLOW_BLESS=1` it writes it instead. Seeds are what the contract's
/// examples encode to, so a changed schema shows up here as a stale seed.
pub fn check_seed(target: &str, name: &str, bytes: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target).join(name);
    if std::env::var_os("STOREFLOW_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a seed has a folder")).expect("creating the corpus folder");
        std::fs::write(&path, bytes).expect("writing a seed");
        return;
    }
    let held = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; write the seeds with STOREFLOW_BLESS=1 cargo test fuzzing", path.display()));
    assert!(held == bytes, "{} is stale; write the seeds again with STOREFLOW_BLESS=1 cargo test fuzzing", path.display());
}

/// Every input kept in `fuzz/regressions/<target>/` (each a crash a fuzzer found, named for
/// what it was), as (file name, bytes): the crate's tests feed each to its target again.
pub fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).expect("reading a regression"))).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    //! Inputs the fuzzers found or that pin a property; each is a sentence.
    use super::*;
    use crate::EVENT_TYPES;

    #[test]
    fn every_example_event_survives_both_targets() {
        for t in EVENT_TYPES {
            let value = json::example(t);
            json_event(value.to_string().as_bytes());
            let event = json::event_from_json(value, JsonOptions::default()).expect("examples validate");
            avro_decode(&codec().encode(&event).unwrap());
        }
    }

    #[test]
    fn the_committed_seed_corpora_hold_every_example_event() {
        // Examples are dated near now; a seed must not change with the clock.
        fn pin(v: &mut serde_json::Value, now: &serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => m.values_mut().for_each(|x| pin(x, now)),
                serde_json::Value::Array(a) => a.iter_mut().for_each(|x| pin(x, now)),
                x if x == now => *x = serde_json::Value::from(1_767_225_600_000i64),
                _ => {}
            }
        }
        for t in EVENT_TYPES {
            let mut value = json::example(t);
            let now = value["occurred_at"].clone();
            pin(&mut value, &now);
            check_seed("json_event", &format!("{}.json", t.name), serde_json::to_string_pretty(&value).unwrap().as_bytes());
            let event = json::event_from_json(value, JsonOptions::default()).unwrap();
            check_seed("avro_decode", &format!("{}.avro", t.name), &codec().encode(&event).unwrap());
        }
    }

    #[test]
    fn every_crash_the_fuzzers_found_is_refused_or_round_trips_now() {
        let found = regressions("avro_decode");
        assert!(found.iter().any(|(n, _)| n == "reco-signal-nan-weight"), "{found:?}");
        for (_, bytes) in &found {
            avro_decode(bytes);
        }
        for (_, bytes) in regressions("json_event") {
            json_event(&bytes);
        }
        let nan = codec().decode(&found.iter().find(|(n, _)| n == "reco-signal-nan-weight").unwrap().1).unwrap();
        assert!(nan.check().unwrap_err().contains("weight"), "{nan:?}");
    }

    #[test]
    fn only_the_types_event_check_covers_have_floating_point_fields() {
        // Event::check refuses NaN and infinities field by field: a new double must join it.
        let with_floats: Vec<&str> =
            EVENT_TYPES.iter().filter(|t| t.schema.contains("\"double\"") || t.schema.contains("\"float\"")).map(|t| t.name).collect();
        assert_eq!(with_floats, ["RecommendationsUpdated", "RecoSignal"]);
    }

    #[test]
    fn truncated_and_empty_wire_bytes_are_refused_not_a_panic() {
        let t = EVENT_TYPES.iter().find(|t| t.name == "OrderPlaced").unwrap();
        let event = json::event_from_json(json::example(t), JsonOptions::default()).unwrap();
        let bytes = codec().encode(&event).unwrap();
        for n in 0..bytes.len() {
            avro_decode(&bytes[..n]);
        }
    }
}
