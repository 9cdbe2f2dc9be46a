//! The analytics questions, each written twice side by side in `sql/analytics/`:
//! `<question>.clickhouse.sql` (reads the materialized rollups, `{name:Type}` parameters)
//! and `<question>.datafusion.sql` (reads the Parquet fact tables, `$name` parameters).
//! Both return the same columns, so one Rust type parses either answer.

use serde::de::DeserializeOwned;

use super::clickhouse::Param;
use super::store::Store;
use crate::Result;

macro_rules! questions {
    ($($q:ident = $file:literal,)*) => {
        /// A question the analytics backends answer.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Question {
            $(#[doc = concat!("`sql/analytics/", $file, ".*.sql`")] $q,)*
        }

        impl Question {
            /// Every question.
            pub const ALL: &'static [Question] = &[$(Question::$q,)*];

            /// The file stem under `sql/analytics/`.
            pub fn name(self) -> &'static str {
                match self { $(Question::$q => $file,)* }
            }

            /// The ClickHouse dialect.
            pub fn clickhouse(self) -> &'static str {
                match self { $(Question::$q => include_str!(concat!("../../../sql/analytics/", $file, ".clickhouse.sql")),)* }
            }

            /// The DataFusion dialect.
            pub fn datafusion(self) -> &'static str {
                match self { $(Question::$q => include_str!(concat!("../../../sql/analytics/", $file, ".datafusion.sql")),)* }
            }
        }
    };
}

questions! {
    LoadProducts = "load_products",
    LoadRates = "load_rates",
    Sales = "sales",
    TopProducts = "top_products",
    TopCategories = "top_categories",
    Funnel = "funnel",
    NewCustomers = "new_customers",
    Returns = "returns",
    VendorSales = "vendor_sales",
    VendorSalesSeries = "vendor_sales_series",
    VendorTopProducts = "vendor_top_products",
    VendorRating = "vendor_rating",
    VendorStock = "vendor_stock",
    VendorRefunds = "vendor_refunds",
    VendorMoney = "vendor_money",
    Money = "money",
    OrderGross = "order_gross",
    CustomerValue = "customer_value",
    Customer = "customer",
    Cohorts = "cohorts",
    SalesSeries = "sales_series",
    Vendors = "vendors",
    LowStock = "low_stock",
    Warehouses = "warehouses",
    ReservationsSeries = "reservations_series",
    FraudDecisions = "fraud_decisions",
    FraudHeld = "fraud_held",
    FraudSignals = "fraud_signals",
}

/// Asks `store` question `q`; `params` are `from`/`to` (times, ms), `vendor`, `customer`,
/// `order` and `unit` (`hour` or `day`).
pub async fn run<T: DeserializeOwned>(store: &Store, q: Question, params: &[(&str, Param)]) -> Result<Vec<T>> {
    match store {
        Store::ClickHouse(c) => c.query(q.clickhouse(), params).await,
        Store::Parquet(p) => p.query(q.datafusion(), params).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_of_a_question_use_the_same_parameters() {
        for q in Question::ALL {
            for p in ["from", "to", "vendor", "order", "unit"] {
                let ch = q.clickhouse().contains(&format!("{{{p}:"));
                let df = q.datafusion().contains(&format!("${p}"));
                assert_eq!(ch, df, "{}: parameter {p}", q.name());
            }
        }
    }
}
