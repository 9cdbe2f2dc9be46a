-- Analytics fact and dimension tables (ClickHouse). Written by the analytics sink
-- (sinks/src/analytics/), whose Rust rows (rows.rs) have exactly these columns; the client
-- validates every insert against this schema.
--
-- Facts are MergeTree, partitioned by month, ordered for the dashboards' filters. Every row
-- carries its source (src_topic, src_partition, src_offset): the sink never inserts a row at
-- or below the highest source offset a table holds for that partition, so a redelivered
-- batch adds nothing (the materialized rollups in 0002 would otherwise count it twice).
-- Dimensions and the sales processor's minutes are ReplacingMergeTree by what decides which
-- state is newer — never event time: a snapshot's own `version` (fact_vendor_minutes) or,
-- for rows from topics without versions, `pos` = partition × 2^48 + offset of the source
-- record (dim_products, dim_vendors; an entity's events all live in one partition, in
-- processing order). `occurred_at` is data. Read them with FINAL.
--
-- Statements are separated by lines ending in ';' and are idempotent (IF NOT EXISTS): the
-- sink runs this file on every start. This file describes the current tables; databases
-- created by an older release are brought to it first (UPGRADES in
-- sinks/src/analytics/clickhouse.rs: columns added, engines rebuilt).

CREATE TABLE IF NOT EXISTS dim_vendors (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    vendor_id String, name String, country LowCardinality(String), plan LowCardinality(String),
    payout_currency LowCardinality(String), pos Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = ReplacingMergeTree(pos) ORDER BY vendor_id;

CREATE TABLE IF NOT EXISTS dim_products (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    product_id String, vendor_id String, sku String, title String, category LowCardinality(String),
    brand LowCardinality(String), status LowCardinality(String), price_minor Int64, currency LowCardinality(String),
    created_at DateTime64(3, 'UTC'), pos Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = ReplacingMergeTree(pos) ORDER BY product_id;

CREATE TABLE IF NOT EXISTS fact_exchange_rates (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    base_currency LowCardinality(String), quote_currency LowCardinality(String), rate_e9 Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree ORDER BY (base_currency, quote_currency, occurred_at);

CREATE TABLE IF NOT EXISTS fact_sessions (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    event_type LowCardinality(String), session_id String, customer_id String, product_id String,
    vendor_id String, category LowCardinality(String), sku String, cart_id String, quantity Int32,
    amount_minor Int64, currency LowCardinality(String), amount_eur_minor Int64, search_query String,
    result_count Int32, page String,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (event_type, occurred_at, session_id);

CREATE TABLE IF NOT EXISTS fact_orders (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    order_id String, customer_id String, session_id String, customer_since DateTime64(3, 'UTC'),
    currency LowCardinality(String), subtotal_minor Int64, shipping_minor Int64, tax_minor Int64,
    discount_minor Int64, total_minor Int64, total_eur_minor Int64, lines Int32, units Int32,
    ship_country LowCardinality(String), bill_country LowCardinality(String),
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (occurred_at, order_id);

CREATE TABLE IF NOT EXISTS fact_order_items (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    order_id String, customer_id String, line_no Int32, sku String, product_id String, vendor_id String,
    category LowCardinality(String), brand LowCardinality(String), quantity Int32, unit_price_minor Int64,
    currency LowCardinality(String), line_total_minor Int64, line_total_eur_minor Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (vendor_id, occurred_at, product_id);

CREATE TABLE IF NOT EXISTS fact_order_status (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    order_id String, customer_id String, previous_status LowCardinality(String), status LowCardinality(String),
    payment_status LowCardinality(String), fulfillment_status LowCardinality(String), reason String,
    total_minor Int64, currency LowCardinality(String), total_eur_minor Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (status, occurred_at, order_id);

CREATE TABLE IF NOT EXISTS fact_order_requests (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    request_type LowCardinality(String), order_id String, return_id String, sku String, product_id String,
    vendor_id String, quantity Int32, reason String, requested_by String,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (request_type, occurred_at, order_id);

CREATE TABLE IF NOT EXISTS fact_payments (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    event_type LowCardinality(String), order_id String, payment_id String, refund_id String, amount_minor Int64,
    currency LowCardinality(String), amount_eur_minor Int64, provider LowCardinality(String),
    failure_code LowCardinality(String), reason String,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (event_type, occurred_at, order_id);

CREATE TABLE IF NOT EXISTS fact_refund_lines (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    order_id String, refund_id String, line_no Int32, sku String, vendor_id String, quantity Int32,
    amount_minor Int64, currency LowCardinality(String), amount_eur_minor Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (vendor_id, occurred_at);

CREATE TABLE IF NOT EXISTS fact_fulfillment (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    event_type LowCardinality(String), order_id String, shipment_id String, return_id String,
    warehouse_id LowCardinality(String), carrier LowCardinality(String), units Int32, restockable UInt8,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (event_type, occurred_at, order_id);

CREATE TABLE IF NOT EXISTS fact_stock_levels (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    sku String, product_id String, vendor_id String, warehouse_id LowCardinality(String), on_hand Int32,
    reserved Int32, available Int32, cause LowCardinality(String), version Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (vendor_id, sku, warehouse_id, occurred_at);

CREATE TABLE IF NOT EXISTS fact_reservations (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    event_type LowCardinality(String), order_id String, sku String, warehouse_id LowCardinality(String),
    quantity Int32, reason String,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (event_type, occurred_at, order_id);

CREATE TABLE IF NOT EXISTS fact_reviews (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    review_id String, product_id String, vendor_id String, customer_id String, rating Int32,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64,
    CONSTRAINT rating_range CHECK rating BETWEEN 1 AND 5
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (vendor_id, product_id, occurred_at);

CREATE TABLE IF NOT EXISTS fact_fraud_scores (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    order_id String, customer_id String, score Int32, decision LowCardinality(String), reasons String,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (decision, occurred_at);

CREATE TABLE IF NOT EXISTS fact_price_changes (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    product_id String, vendor_id String, sku String, old_price_minor Int64, price_minor Int64,
    currency LowCardinality(String), price_eur_minor Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (product_id, occurred_at);

CREATE TABLE IF NOT EXISTS fact_customer_events (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    event_type LowCardinality(String), customer_id String, country LowCardinality(String), marketing_opt_in UInt8,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (event_type, occurred_at);

CREATE TABLE IF NOT EXISTS fact_vendor_minutes (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    vendor_id String, minute DateTime64(3, 'UTC'), currency LowCardinality(String), orders Int32, units Int32,
    gmv_minor Int64, refunds_minor Int64, commission_minor Int64, net_payout_minor Int64,
    base_currency LowCardinality(String), gmv_base_minor Int64, net_payout_base_minor Int64, version Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(minute) ORDER BY (vendor_id, minute, currency);

-- Vendors' money movements (transfers, reversals, disputes' vendor shares), in the order's
-- currency; every row balances: captured − refunded = transferred + commission.
CREATE TABLE IF NOT EXISTS fact_vendor_money (
    event_id String, occurred_at DateTime64(3, 'UTC'),
    kind LowCardinality(String), order_id String, payment_id String, vendor_id String, currency LowCardinality(String),
    movement_id String, refund_id String, status LowCardinality(String),
    captured_minor Int64, refunded_minor Int64, transferred_minor Int64, commission_minor Int64,
    disputed_minor Int64, dispute_lost_minor Int64,
    src_topic LowCardinality(String), src_partition UInt32, src_offset UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) ORDER BY (vendor_id, occurred_at, order_id);
