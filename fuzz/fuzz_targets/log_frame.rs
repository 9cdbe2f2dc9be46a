//! The embedded log's record frame reader, on raw and on sealed (valid-CRC) bytes.
//! The properties it checks: `storeflow_ingest::embedded::fuzzing::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| storeflow_ingest::embedded::fuzzing::frame(data));
