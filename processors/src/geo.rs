//! The warehouses a deployment has unless configured otherwise; the geography itself (regions,
//! distances) is the contract's, `storeflow_avro::geo`.

use std::collections::BTreeMap;

pub use storeflow_avro::geo::{distance, region};

/// Warehouse id → country it ships from: the default of `[processors.inventory] warehouses`
/// and `[processors.orders] warehouses` (`storeflow_avro::geo::WAREHOUSES`).
pub fn default_warehouses() -> BTreeMap<String, String> {
    storeflow_avro::geo::WAREHOUSES.iter().map(|w| (w.id.to_string(), w.country.to_string())).collect()
}
