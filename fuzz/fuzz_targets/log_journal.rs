//! The embedded log's journal replay, on raw and on sealed (valid-CRC) entries.
//! The properties it checks: `storeflow_ingest::embedded::fuzzing::journal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| storeflow_ingest::embedded::fuzzing::journal(data));
