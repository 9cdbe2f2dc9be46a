//! Sinks: land the event stream in the stores the API and the analysts read.
//!
//! | sink (`name`) | distributed | embedded twin (default) | reads | writes |
//! |---|---|---|---|---|
//! | [`read_model`] | Postgres (sqlx, `sql/postgres/`) | SQLite file `<data_dir>/read_model.sqlite` | orders, payments, fulfillment, reservations, lifecycle, fraud, catalog, customers, inventory levels | orders, items, history, products, vendors, customers, inventory, reservations, payments, shipments, fraud scores |
//! | [`analytics`] | ClickHouse (`sql/clickhouse/`) | Parquet files under `<data_dir>/analytics/`, queried with DataFusion | every storefront and derived topic | fact and dimension tables, materialized rollups |
//! | [`search`] | Elasticsearch (`_bulk`, external versions) | tantivy index under `<data_dir>/search/` | catalog, inventory levels, recommendations, sessions, exchange rates | one document per product |
//!
//! Every sink runs on the common [`runner`]: its own consumer group `<app>.sink.<name>`,
//! batches by size and time, idempotent writes, retries with capped back-off while holding
//! the offsets, dead letters to `<topic>.dlq` (the processors' headers, so `storeflow dlq
//! list/replay` work), offsets committed only after the write is durable, and metrics. A
//! sink that joins facts with reference data (analytics, search) has the runner read the
//! [`reference`] topics — exchange rates, the catalogue — ahead of every write, so the joins
//! depend on the log, not on the interleaving of its topics.
//!
//! A sink is one folder implementing [`runner::Sink`] and [`Registered`], plus one line in
//! [`registry()`] below (docs/ADDING-A-SINK.md). [`Sinks::start`] starts the enabled sinks
//! on a log and hands out async query handles ([`ReadModel`], [`Search`], [`Analytics`], or
//! any sink's with [`Sinks::handle`]) that the API's axum handlers can await.
//! [`rebuild`] replays the log into a fresh store of one sink and swaps it in
//! (`storeflow sinks rebuild`). [`snapshot`] dumps the embedded stores of a data dir canonically, read-only, for checks
//! that two runs (or a rebuild) end with the same stores.
//! See `docs/SINKS.md`.

// The crate's own name inside it too, so that a sink's folder reads the same here and in
// docs/ADDING-A-SINK.md (`use storeflow_sinks::…`).
extern crate self as storeflow_sinks;

pub mod analytics;
pub mod config;
mod error;
pub mod metrics;
pub mod money;
pub mod read_model;
pub mod rebuild;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod runner;
pub mod search;
pub mod snapshot;
mod sinks;

pub use analytics::{
    Analytics, AnalyticsSink, CohortMonth, CustomerInsight, CustomerValue, Dashboard, DashboardRange, FraudBoard, FraudDecision, FraudSignal, Granularity, HeldOrder,
    InventoryHealth, LowStock, ReservationBucket, SalesBucket, VendorPerformance, VendorSales, WarehouseStock,
};
pub use config::SinksConfig;
pub use error::{Result, Retry, SinkError};
pub use read_model::{ReadModel, ReadModelSink};
pub use registry::{Registered, SinkConfig, SinkContext, Store};
pub use search::{Search, SearchQuery, SearchResults, SearchSink, SortBy};
pub use sinks::{SinkCounts, Sinks};

registry!(
    read_model::ReadModelSink,
    analytics::AnalyticsSink,
    search::SearchSink,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_names_are_unique_snake_case() {
        let names: Vec<&str> = registry().iter().map(|r| r.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate sink names: {names:?}");
        for n in names {
            assert!(!n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "`{n}` is not snake_case");
        }
    }
}
