//! Dead-letter topics: see [`storeflow_ingest::dlq`], where the records are built, read and
//! replayed for processors and sinks alike.

pub use storeflow_ingest::dlq::*;
