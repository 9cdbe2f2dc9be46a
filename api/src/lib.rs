//! The HTTP surface of storeflow.
//!
//! - [`registry`] — the embedded schema registry over the Confluent Schema Registry REST API
//!   (the subset clients use), so Confluent-compatible tools and storeflow's own HTTP
//!   registry client can talk to it.
//!
//! The storefront API (events, orders, reads, auth) arrives with issue #8.

pub mod registry;
