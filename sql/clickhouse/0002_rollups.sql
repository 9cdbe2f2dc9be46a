-- Materialized rollups for the dashboards (ClickHouse). Each is an AggregatingMergeTree or
-- SummingMergeTree by hour, fed by a materialized view on insert into a fact table; a range
-- query merges the hours it covers. Distinct counts (orders per vendor, sessions per funnel
-- stage, returned orders, cohort customers) keep uniqExact states, so merging hours or
-- days counts each id once.

CREATE TABLE IF NOT EXISTS rollup_sales_hour (
    hour DateTime('UTC'), orders UInt64, units Int64, gmv_eur_minor Int64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_sales_hour TO rollup_sales_hour AS
SELECT toDateTime(toStartOfHour(occurred_at), 'UTC') AS hour, count() AS orders,
       sum(toInt64(units)) AS units, sum(total_eur_minor) AS gmv_eur_minor
FROM fact_orders GROUP BY hour;

CREATE TABLE IF NOT EXISTS rollup_product_hour (
    hour DateTime('UTC'), vendor_id String, category LowCardinality(String), product_id String,
    units Int64, gmv_eur_minor Int64, lines UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY (hour, vendor_id, category, product_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_product_hour TO rollup_product_hour AS
SELECT toDateTime(toStartOfHour(occurred_at), 'UTC') AS hour, vendor_id, category, product_id,
       sum(toInt64(quantity)) AS units, sum(line_total_eur_minor) AS gmv_eur_minor, count() AS lines
FROM fact_order_items GROUP BY hour, vendor_id, category, product_id;

CREATE TABLE IF NOT EXISTS rollup_vendor_hour (
    hour DateTime('UTC'), vendor_id String,
    orders AggregateFunction(uniqExact, String),
    units SimpleAggregateFunction(sum, Int64),
    gmv_eur_minor SimpleAggregateFunction(sum, Int64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY (vendor_id, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_vendor_hour TO rollup_vendor_hour AS
SELECT toDateTime(toStartOfHour(occurred_at), 'UTC') AS hour, vendor_id, uniqExactState(order_id) AS orders,
       sum(toInt64(quantity)) AS units, sum(line_total_eur_minor) AS gmv_eur_minor
FROM fact_order_items GROUP BY hour, vendor_id;

CREATE TABLE IF NOT EXISTS rollup_funnel_hour (
    hour DateTime('UTC'),
    sessions AggregateFunction(uniqExact, String),
    viewed AggregateFunction(uniqExact, String),
    carted AggregateFunction(uniqExact, String),
    checkout AggregateFunction(uniqExact, String),
    ordered AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_funnel_sessions TO rollup_funnel_hour AS
SELECT toDateTime(toStartOfHour(occurred_at), 'UTC') AS hour,
       uniqExactState(session_id) AS sessions,
       uniqExactStateIf(session_id, event_type = 'ProductViewed') AS viewed,
       uniqExactStateIf(session_id, event_type = 'CartItemAdded') AS carted,
       uniqExactStateIf(session_id, event_type = 'CheckoutStarted') AS checkout
FROM fact_sessions GROUP BY hour;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_funnel_orders TO rollup_funnel_hour AS
SELECT toDateTime(toStartOfHour(occurred_at), 'UTC') AS hour,
       uniqExactStateIf(session_id, session_id != '') AS ordered
FROM fact_orders GROUP BY hour;

CREATE TABLE IF NOT EXISTS rollup_returns_hour (
    hour DateTime('UTC'), vendor_id String,
    returned_orders AggregateFunction(uniqExact, String),
    returned_units SimpleAggregateFunction(sum, Int64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY (hour, vendor_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_returns_hour TO rollup_returns_hour AS
SELECT toDateTime(toStartOfHour(occurred_at), 'UTC') AS hour, vendor_id,
       uniqExactState(order_id) AS returned_orders, sum(toInt64(quantity)) AS returned_units
FROM fact_order_requests WHERE request_type = 'return' GROUP BY hour, vendor_id;

CREATE TABLE IF NOT EXISTS rollup_customers_hour (
    hour DateTime('UTC'), country LowCardinality(String), registrations UInt64, erasures UInt64
) ENGINE = SummingMergeTree PARTITION BY toYYYYMM(hour) ORDER BY (hour, country);

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_customers_hour TO rollup_customers_hour AS
SELECT toDateTime(toStartOfHour(occurred_at), 'UTC') AS hour, country,
       countIf(event_type = 'CustomerRegistered') AS registrations,
       countIf(event_type = 'CustomerErased') AS erasures
FROM fact_customer_events GROUP BY hour, country;

CREATE TABLE IF NOT EXISTS rollup_customer_value (
    customer_id String,
    orders SimpleAggregateFunction(sum, UInt64),
    gmv_eur_minor SimpleAggregateFunction(sum, Int64),
    first_order SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_order SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    cohort_month SimpleAggregateFunction(min, Date)
) ENGINE = AggregatingMergeTree ORDER BY customer_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_customer_value TO rollup_customer_value AS
SELECT customer_id, count() AS orders, sum(total_eur_minor) AS gmv_eur_minor,
       min(occurred_at) AS first_order, max(occurred_at) AS last_order,
       min(toStartOfMonth(if(toUnixTimestamp64Milli(customer_since) > 0, customer_since, occurred_at))) AS cohort_month
FROM fact_orders GROUP BY customer_id;

CREATE TABLE IF NOT EXISTS rollup_cohorts (
    cohort_month Date, order_month Date,
    customers AggregateFunction(uniqExact, String),
    orders SimpleAggregateFunction(sum, UInt64),
    gmv_eur_minor SimpleAggregateFunction(sum, Int64)
) ENGINE = AggregatingMergeTree ORDER BY (cohort_month, order_month);

CREATE MATERIALIZED VIEW IF NOT EXISTS mv_cohorts TO rollup_cohorts AS
SELECT toStartOfMonth(if(toUnixTimestamp64Milli(customer_since) > 0, customer_since, occurred_at)) AS cohort_month,
       toStartOfMonth(occurred_at) AS order_month,
       uniqExactState(customer_id) AS customers, count() AS orders, sum(total_eur_minor) AS gmv_eur_minor
FROM fact_orders GROUP BY cohort_month, order_month;
