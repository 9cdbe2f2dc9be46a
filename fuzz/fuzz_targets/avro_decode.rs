//! Confluent wire-format bytes, as a topic hands them to the decoder.
//! The properties it checks: `storeflow_avro::fuzzing::avro_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| storeflow_avro::fuzzing::avro_decode(data));
