//! The analytics tables as Rust rows: one struct per fact or dimension table, usable both
//! as a ClickHouse `RowBinary` row (`clickhouse::Row`) and as an Arrow record batch for the
//! Parquet twin. The column lists here, `sql/clickhouse/0001_tables.sql` and the Parquet
//! schemas are the same; `tests::every_table_has_source_columns_last` and the integration
//! tests (the client validates every insert against the server's schema) keep them so.
//!
//! Column kinds: `str` (String), `i32`, `i64`, `u8`, `u32`, `u64`, `ts` (milliseconds since
//! the epoch: `DateTime64(3, 'UTC')` in ClickHouse, `Timestamp(ms, "UTC")` in Arrow).
//!
//! Every row ends with its source: `src_topic`, `src_partition`, `src_offset`. They make
//! writes idempotent: a table never receives a row of a source offset at or below the
//! highest one it holds for that partition (see `sink.rs`).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::{Result, SinkError};

/// A row of an analytics table.
pub trait FactRow: clickhouse::RowOwned + clickhouse::RowWrite + clickhouse::RowRead + Serialize + Clone + Send + Sync + 'static {
    /// Table name (the same in ClickHouse and under `<data_dir>/analytics/`).
    const TABLE: &'static str;
    /// Arrow schema.
    fn schema() -> SchemaRef;
    /// Rows as one record batch.
    fn to_batch(rows: &[Self]) -> Result<RecordBatch>;
    /// Rows from a record batch with this schema.
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>>;
    /// Where the row came from: topic, partition, offset.
    fn source(&self) -> (&str, u32, u64);
    /// The table's CHECK constraints (the Parquet twin enforces them like ClickHouse).
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

macro_rules! rust_ty {
    (str) => { String };
    (i32) => { i32 };
    (i64) => { i64 };
    (u8) => { u8 };
    (u32) => { u32 };
    (u64) => { u64 };
    (ts) => { i64 };
}

macro_rules! arrow_ty {
    (str) => { DataType::Utf8 };
    (i32) => { DataType::Int32 };
    (i64) => { DataType::Int64 };
    (u8) => { DataType::UInt8 };
    (u32) => { DataType::UInt32 };
    (u64) => { DataType::UInt64 };
    (ts) => { DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())) };
}

macro_rules! to_arrow {
    (str, $rows:expr, $f:ident) => { Arc::new(StringArray::from_iter_values($rows.iter().map(|r| r.$f.as_str()))) as ArrayRef };
    (i32, $rows:expr, $f:ident) => { Arc::new(Int32Array::from_iter_values($rows.iter().map(|r| r.$f))) as ArrayRef };
    (i64, $rows:expr, $f:ident) => { Arc::new(Int64Array::from_iter_values($rows.iter().map(|r| r.$f))) as ArrayRef };
    (u8, $rows:expr, $f:ident) => { Arc::new(UInt8Array::from_iter_values($rows.iter().map(|r| r.$f))) as ArrayRef };
    (u32, $rows:expr, $f:ident) => { Arc::new(UInt32Array::from_iter_values($rows.iter().map(|r| r.$f))) as ArrayRef };
    (u64, $rows:expr, $f:ident) => { Arc::new(UInt64Array::from_iter_values($rows.iter().map(|r| r.$f))) as ArrayRef };
    (ts, $rows:expr, $f:ident) => {
        Arc::new(TimestampMillisecondArray::from_iter_values($rows.iter().map(|r| r.$f)).with_timezone("UTC")) as ArrayRef
    };
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, i: usize, name: &str) -> Result<&'a T> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| SinkError::Parquet { context: format!("reading column {name}"), message: "unexpected type".into(), io: false })
}

macro_rules! from_arrow {
    (str, $b:expr, $i:expr, $name:expr) => { column::<StringArray>($b, $i, $name)? };
    (i32, $b:expr, $i:expr, $name:expr) => { column::<Int32Array>($b, $i, $name)? };
    (i64, $b:expr, $i:expr, $name:expr) => { column::<Int64Array>($b, $i, $name)? };
    (u8, $b:expr, $i:expr, $name:expr) => { column::<UInt8Array>($b, $i, $name)? };
    (u32, $b:expr, $i:expr, $name:expr) => { column::<UInt32Array>($b, $i, $name)? };
    (u64, $b:expr, $i:expr, $name:expr) => { column::<UInt64Array>($b, $i, $name)? };
    (ts, $b:expr, $i:expr, $name:expr) => { column::<TimestampMillisecondArray>($b, $i, $name)? };
}

macro_rules! get_arrow {
    (str, $a:expr, $row:expr) => { $a.value($row).to_string() };
    ($k:ident, $a:expr, $row:expr) => { $a.value($row) };
}

macro_rules! table {
    ($(#[$m:meta])* $name:ident = $table:literal { $($(#[$fm:meta])* $field:ident : $kind:ident),* $(,)? } $(check($self:ident) $check:block)?) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, clickhouse::Row)]
        pub struct $name {
            /// Id of the event the row comes from.
            pub event_id: String,
            /// When the event happened (ms).
            pub occurred_at: i64,
            $($(#[$fm])* pub $field: rust_ty!($kind),)*
            /// Source topic.
            pub src_topic: String,
            /// Source partition.
            pub src_partition: u32,
            /// Source offset.
            pub src_offset: u64,
        }

        impl FactRow for $name {
            const TABLE: &'static str = $table;

            fn schema() -> SchemaRef {
                Arc::new(Schema::new(vec![
                    Field::new("event_id", DataType::Utf8, false),
                    Field::new("occurred_at", arrow_ty!(ts), false),
                    $(Field::new(stringify!($field), arrow_ty!($kind), false),)*
                    Field::new("src_topic", DataType::Utf8, false),
                    Field::new("src_partition", DataType::UInt32, false),
                    Field::new("src_offset", DataType::UInt64, false),
                ]))
            }

            fn to_batch(rows: &[Self]) -> Result<RecordBatch> {
                RecordBatch::try_new(Self::schema(), vec![
                    to_arrow!(str, rows, event_id),
                    to_arrow!(ts, rows, occurred_at),
                    $(to_arrow!($kind, rows, $field),)*
                    to_arrow!(str, rows, src_topic),
                    to_arrow!(u32, rows, src_partition),
                    to_arrow!(u64, rows, src_offset),
                ])
                .map_err(SinkError::parquet(concat!("building a record batch of ", $table)))
            }

            #[allow(unused_assignments)]
            fn from_batch(b: &RecordBatch) -> Result<Vec<Self>> {
                let mut i = 0usize;
                let event_id = from_arrow!(str, b, i, "event_id");
                i += 1;
                let occurred_at = from_arrow!(ts, b, i, "occurred_at");
                i += 1;
                $(let $field = from_arrow!($kind, b, i, stringify!($field)); i += 1;)*
                let src_topic = from_arrow!(str, b, i, "src_topic");
                i += 1;
                let src_partition = from_arrow!(u32, b, i, "src_partition");
                i += 1;
                let src_offset = from_arrow!(u64, b, i, "src_offset");
                Ok((0..b.num_rows())
                    .map(|r| $name {
                        event_id: get_arrow!(str, event_id, r),
                        occurred_at: get_arrow!(ts, occurred_at, r),
                        $($field: get_arrow!($kind, $field, r),)*
                        src_topic: get_arrow!(str, src_topic, r),
                        src_partition: get_arrow!(u32, src_partition, r),
                        src_offset: get_arrow!(u64, src_offset, r),
                    })
                    .collect())
            }

            fn source(&self) -> (&str, u32, u64) {
                (&self.src_topic, self.src_partition, self.src_offset)
            }

            $(fn check(&$self) -> std::result::Result<(), String> $check)?
        }
    };
}

table! {
    /// Session activity: page and product views, searches, cart changes, checkouts.
    FactSession = "fact_sessions" {
        /// PageViewed, ProductViewed, SearchPerformed, CartItemAdded, CartItemRemoved, CheckoutStarted.
        event_type: str, session_id: str, customer_id: str, product_id: str, vendor_id: str, category: str, sku: str,
        cart_id: str, quantity: i32, amount_minor: i64, currency: str, amount_eur_minor: i64, search_query: str,
        result_count: i32, page: str,
    }
}

table! {
    /// One row per placed order.
    FactOrder = "fact_orders" {
        order_id: str, customer_id: str, session_id: str,
        /// When the customer registered (0: unknown).
        customer_since: ts,
        currency: str, subtotal_minor: i64, shipping_minor: i64, tax_minor: i64, discount_minor: i64, total_minor: i64,
        total_eur_minor: i64, lines: i32, units: i32, ship_country: str, bill_country: str,
    }
}

table! {
    /// One row per order line, with the product's category and brand at the time.
    FactOrderItem = "fact_order_items" {
        order_id: str, customer_id: str, line_no: i32, sku: str, product_id: str, vendor_id: str, category: str, brand: str,
        quantity: i32, unit_price_minor: i64, currency: str, line_total_minor: i64, line_total_eur_minor: i64,
    }
}

table! {
    /// Every state change of the order saga.
    FactOrderStatus = "fact_order_status" {
        order_id: str, customer_id: str, previous_status: str, status: str, payment_status: str, fulfillment_status: str,
        reason: str, total_minor: i64, currency: str, total_eur_minor: i64,
    }
}

table! {
    /// Cancel and return requests (one row per returned line).
    FactOrderRequest = "fact_order_requests" {
        /// cancel or return.
        request_type: str, order_id: str, return_id: str, sku: str, product_id: str, vendor_id: str, quantity: i32,
        reason: str, requested_by: str,
    }
}

table! {
    /// Payment outcomes and refunds.
    FactPayment = "fact_payments" {
        /// PaymentAuthorized, PaymentCaptured, PaymentFailed, RefundIssued.
        event_type: str, order_id: str, payment_id: str, refund_id: str, amount_minor: i64, currency: str,
        amount_eur_minor: i64, provider: str, failure_code: str, reason: str,
    }
}

table! {
    /// Refunds per sku and vendor.
    FactRefundLine = "fact_refund_lines" {
        order_id: str, refund_id: str, line_no: i32, sku: str, vendor_id: str, quantity: i32, amount_minor: i64, currency: str,
        amount_eur_minor: i64,
    }
}

table! {
    /// Shipments and returns received.
    FactFulfillment = "fact_fulfillment" {
        /// ShipmentCreated, ShipmentShipped, ShipmentDelivered, ReturnReceived.
        event_type: str, order_id: str, shipment_id: str, return_id: str, warehouse_id: str, carrier: str, units: i32,
        restockable: u8,
    }
}

table! {
    /// Stock of a sku in a warehouse after each change. The current level is the row with
    /// the highest `version`, then the highest source position (rows from before versions
    /// have version 0) — not the newest event time.
    FactStockLevel = "fact_stock_levels" {
        sku: str, product_id: str, vendor_id: str, warehouse_id: str, on_hand: i32, reserved: i32, available: i32, cause: str,
        /// `StockLevelChanged.version`: one more per change of the sku in the warehouse.
        version: i64,
    }
}

table! {
    /// Reservation lines: made, released, committed, rejected.
    FactReservation = "fact_reservations" {
        event_type: str, order_id: str, sku: str, warehouse_id: str, quantity: i32, reason: str,
    }
}

table! {
    /// Product reviews.
    FactReview = "fact_reviews" {
        review_id: str, product_id: str, vendor_id: str, customer_id: str, rating: i32,
    }
    check(self) {
        if (1..=5).contains(&self.rating) {
            Ok(())
        } else {
            Err(format!("constraint rating_range (rating BETWEEN 1 AND 5) of fact_reviews is violated: rating = {}", self.rating))
        }
    }
}

table! {
    /// Fraud scores.
    FactFraudScore = "fact_fraud_scores" {
        order_id: str, customer_id: str, score: i32, decision: str,
        /// Reason codes, comma separated.
        reasons: str,
    }
}

table! {
    /// Price changes.
    FactPriceChange = "fact_price_changes" {
        product_id: str, vendor_id: str, sku: str,
        /// -1 when unknown.
        old_price_minor: i64,
        price_minor: i64, currency: str, price_eur_minor: i64,
    }
}

table! {
    /// Customer registrations and erasures (no PII).
    FactCustomerEvent = "fact_customer_events" {
        /// CustomerRegistered or CustomerErased.
        event_type: str, customer_id: str, country: str, marketing_opt_in: u8,
    }
}

table! {
    /// The sales processor's per-vendor, per-minute report (the highest `version` per vendor,
    /// minute and currency wins).
    FactVendorMinute = "fact_vendor_minutes" {
        vendor_id: str, minute: ts, currency: str, orders: i32, units: i32, gmv_minor: i64, refunds_minor: i64,
        commission_minor: i64, net_payout_minor: i64, base_currency: str, gmv_base_minor: i64, net_payout_base_minor: i64,
        /// `VendorSalesMinute.version`: one more per change of the vendor's minute.
        version: i64,
    }
}

table! {
    /// Vendors' money movements, in the order's currency: one row per vendor transfer
    /// (`VendorTransferCreated`), per transfer reversal (`VendorTransferReversed`) and per
    /// vendor share of a dispute opened or closed (`DisputeOpened`/`DisputeClosed`, split
    /// over the order's vendors in proportion to their captured gross, largest remainder;
    /// `vendor_id` is empty when the order has no transfer). Each row balances by itself:
    /// `captured_minor − refunded_minor = transferred_minor + commission_minor`, so any
    /// sum of rows does too.
    FactVendorMoney = "fact_vendor_money" {
        /// transfer, reversal, dispute_opened or dispute_closed.
        kind: str, order_id: str, payment_id: str, vendor_id: str, currency: str,
        /// The transfer, reversal or dispute id.
        movement_id: str,
        /// The refund a reversal belongs to.
        refund_id: str,
        /// A dispute's status (won, lost, warning_closed, …).
        status: str,
        /// The vendor's captured lines (a transfer's gross).
        captured_minor: i64,
        /// The vendor's share of a refund.
        refunded_minor: i64,
        /// Moved to the vendor (+ transfer, − reversal).
        transferred_minor: i64,
        /// Kept by the marketplace (+ on a transfer, − given back on a reversal).
        commission_minor: i64,
        /// The vendor's share of a dispute opened.
        disputed_minor: i64,
        /// The vendor's share of a dispute closed as lost.
        dispute_lost_minor: i64,
    }
}

table! {
    /// Exchange rates: `rate_e9` units of quote per unit of base, × 10⁹.
    FactExchangeRate = "fact_exchange_rates" {
        base_currency: str, quote_currency: str, rate_e9: i64,
    }
}

table! {
    /// Products: the full state after each catalog event (the highest `pos` wins).
    DimProduct = "dim_products" {
        product_id: str, vendor_id: str, sku: str, title: str, category: str, brand: str, status: str, price_minor: i64,
        currency: str, created_at: ts,
        /// Log position (`Item::position`) of the catalog event after which this is the
        /// product's state: a product's catalog events all live in one partition.
        pos: i64,
    }
}

table! {
    /// Vendors (the highest `pos` wins).
    DimVendor = "dim_vendors" {
        vendor_id: str, name: str, country: str, plan: str, payout_currency: str,
        /// Log position of the VendorOnboarded.
        pos: i64,
    }
}

macro_rules! all_tables {
    ($($field:ident : $ty:ident),* $(,)?) => {
        /// The rows of one batch, per table.
        #[derive(Debug, Default)]
        pub struct Rows {
            $(#[doc = concat!("`", stringify!($field), "`")] pub $field: Vec<$ty>,)*
        }

        /// Writes one table's rows (the ClickHouse or Parquet backend, with the sink's
        /// idempotency filter).
        #[allow(async_fn_in_trait)]
        pub trait TableWriter {
            /// Writes `rows` of table `R`.
            async fn write_table<R: FactRow>(&mut self, rows: &[R]) -> Result<()>;
        }

        impl Rows {
            /// Every table, in write order.
            pub const TABLES: &'static [&'static str] = &[$(<$ty as FactRow>::TABLE),*];

            /// Rows over all tables.
            pub fn len(&self) -> usize {
                0 $(+ self.$field.len())*
            }

            /// True when no table has a row.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Writes every table that has rows, in order.
            pub async fn write<W: TableWriter>(&self, w: &mut W) -> Result<()> {
                $(if !self.$field.is_empty() { w.write_table(&self.$field).await?; })*
                Ok(())
            }
        }

        /// Every table with its Arrow schema.
        pub fn schemas() -> Vec<(&'static str, SchemaRef)> {
            vec![$((<$ty as FactRow>::TABLE, <$ty as FactRow>::schema())),*]
        }
    };
}

all_tables! {
    dim_vendors: DimVendor,
    dim_products: DimProduct,
    fact_exchange_rates: FactExchangeRate,
    fact_sessions: FactSession,
    fact_orders: FactOrder,
    fact_order_items: FactOrderItem,
    fact_order_status: FactOrderStatus,
    fact_order_requests: FactOrderRequest,
    fact_payments: FactPayment,
    fact_refund_lines: FactRefundLine,
    fact_fulfillment: FactFulfillment,
    fact_stock_levels: FactStockLevel,
    fact_reservations: FactReservation,
    fact_reviews: FactReview,
    fact_fraud_scores: FactFraudScore,
    fact_price_changes: FactPriceChange,
    fact_customer_events: FactCustomerEvent,
    fact_vendor_minutes: FactVendorMinute,
    fact_vendor_money: FactVendorMoney,
}

/// A record batch of `table` written by an older release, in the current `schema`: the
/// columns it has are kept (by name), columns added since are filled — `pos` from the row's
/// own source (`Item::position` of `src_partition`, `src_offset`: exact, each row names the
/// record it comes from), a snapshot `version` with 0 (what records carried before versions
/// existed) — and columns dropped since (`dim_products.version`, an event time) are left
/// out. The Parquet twin's counterpart of the ClickHouse `UPGRADES`.
pub fn upgrade_batch(table: &str, schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let failed = |message: String| SinkError::Parquet { context: format!("upgrading a file of {table}"), message, io: false };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        if let Some(c) = batch.column_by_name(f.name()) {
            columns.push(c.clone());
            continue;
        }
        let filled: ArrayRef = match f.name().as_str() {
            "pos" => {
                let part = from_arrow!(u32, batch, batch.schema().index_of("src_partition").map_err(|e| failed(e.to_string()))?, "src_partition");
                let off = from_arrow!(u64, batch, batch.schema().index_of("src_offset").map_err(|e| failed(e.to_string()))?, "src_offset");
                Arc::new(Int64Array::from_iter_values((0..batch.num_rows()).map(|r| crate::runner::position(part.value(r), off.value(r)))))
            }
            "version" => Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(0, batch.num_rows()))),
            other => return Err(failed(format!("column {other} is missing and has no default"))),
        };
        columns.push(filled);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(SinkError::parquet(format!("upgrading a file of {table}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_source_columns_last() {
        for (name, schema) in schemas() {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(&names[..2], &["event_id", "occurred_at"], "{name}");
            assert_eq!(&names[names.len() - 3..], &["src_topic", "src_partition", "src_offset"], "{name}");
        }
    }

    #[test]
    fn rows_round_trip_through_arrow() {
        let rows = vec![FactReview {
            event_id: "e".into(),
            occurred_at: 5,
            review_id: "r".into(),
            product_id: "p".into(),
            vendor_id: "v".into(),
            customer_id: "c".into(),
            rating: 4,
            src_topic: "t".into(),
            src_partition: 1,
            src_offset: 9,
        }];
        let b = FactReview::to_batch(&rows).unwrap();
        assert_eq!(FactReview::from_batch(&b).unwrap(), rows);
    }

    #[test]
    fn a_review_rating_outside_one_to_five_breaks_the_constraint() {
        let r = FactReview { rating: 9, ..Default::default() };
        assert!(r.check().unwrap_err().contains("rating_range"));
        assert!(FactReview { rating: 5, ..Default::default() }.check().is_ok());
    }
}
