//! One event as an app posts it: the API's field limits, then the JSON → Avro validator.
//! The properties it checks: `storeflow_avro::fuzzing::json_event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| storeflow_avro::fuzzing::json_event(data));
