-- The read model: what the API reads (orders, inventory, products, vendors, customers …).
--
-- Written by the read_model sink (sinks/src/read_model/). Runs on Postgres as it is and on
-- SQLite (the embedded twin) after one substitution, JSONB -> TEXT
-- (sinks/src/read_model/dialect.rs). Times are BIGINT milliseconds since the epoch (UTC),
-- money is BIGINT minor units beside its ISO-4217 currency.
--
-- Idempotency: every table has the entity's id as its key and is written by upserts whose
-- guard columns (`*_at`) keep the newest event's values, so a redelivered batch changes
-- nothing. CHECK constraints turn impossible values into a rejected record (the sink sends
-- it to the dead-letter topic) instead of a bad row.

CREATE TABLE vendors (
    vendor_id          TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    country            TEXT NOT NULL,
    plan               TEXT NOT NULL,
    payout_currency    TEXT NOT NULL,
    stripe_account_id  TEXT,
    onboarded_at       BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE products (
    product_id    TEXT PRIMARY KEY,
    vendor_id     TEXT NOT NULL,
    sku           TEXT,
    title         TEXT,
    description   TEXT,
    translations  JSONB,
    category      TEXT,
    brand         TEXT,
    status        TEXT,
    price_minor   BIGINT CHECK (price_minor IS NULL OR price_minor >= 0),
    currency      TEXT,
    price_at      BIGINT,
    created_at    BIGINT,
    catalog_at    BIGINT NOT NULL,
    rating_avg    DOUBLE PRECISION,
    rating_count  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX products_vendor ON products (vendor_id);
CREATE INDEX products_sku ON products (sku);

CREATE TABLE reviews (
    review_id     TEXT PRIMARY KEY,
    product_id    TEXT NOT NULL,
    vendor_id     TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    rating        INTEGER NOT NULL CONSTRAINT review_rating_range CHECK (rating BETWEEN 1 AND 5),
    title         TEXT,
    body          TEXT,
    submitted_at  BIGINT NOT NULL
);
CREATE INDEX reviews_product ON reviews (product_id);
CREATE INDEX reviews_vendor ON reviews (vendor_id);

-- PII (email, name) is set to NULL when the customer is erased, and stays NULL: a
-- redelivered CustomerRegistered never brings it back.
CREATE TABLE customers (
    customer_id       TEXT PRIMARY KEY,
    email             TEXT,
    name              TEXT,
    country           TEXT,
    marketing_opt_in  BOOLEAN,
    registered_at     BIGINT,
    erased_at         BIGINT,
    erase_reason      TEXT
);

-- One row per order: what was placed (from OrderPlaced) and where the saga has it now
-- (the three states from OrderStatusChanged, guarded by status_at). Addresses are not kept,
-- only their countries.
CREATE TABLE orders (
    order_id            TEXT PRIMARY KEY,
    customer_id         TEXT,
    session_id          TEXT,
    currency            TEXT,
    subtotal_minor      BIGINT,
    shipping_minor      BIGINT,
    tax_minor           BIGINT,
    discount_minor      BIGINT,
    total_minor         BIGINT,
    item_count          INTEGER,
    units               INTEGER,
    ship_country        TEXT,
    bill_country        TEXT,
    placed_at           BIGINT,
    status              TEXT NOT NULL DEFAULT 'placed',
    payment_status      TEXT NOT NULL DEFAULT 'pending',
    fulfillment_status  TEXT NOT NULL DEFAULT 'unfulfilled',
    status_reason       TEXT,
    status_at           BIGINT
);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_placed_at ON orders (placed_at);

CREATE TABLE order_items (
    order_id          TEXT NOT NULL,
    line_no           INTEGER NOT NULL,
    sku               TEXT NOT NULL,
    product_id        TEXT NOT NULL,
    vendor_id         TEXT NOT NULL,
    quantity          INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_minor  BIGINT NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_items_vendor ON order_items (vendor_id);
CREATE INDEX order_items_product ON order_items (product_id);

-- Every event about an order, as JSON (OrderPlaced without addresses, card token or IP).
CREATE TABLE order_events (
    event_id     TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    topic        TEXT NOT NULL,
    partition_no INTEGER NOT NULL,
    offset_no    BIGINT NOT NULL,
    payload      JSONB NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, occurred_at);

-- Stock per sku and warehouse after the latest StockLevelChanged.
CREATE TABLE inventory (
    sku           TEXT NOT NULL,
    warehouse_id  TEXT NOT NULL,
    on_hand       INTEGER NOT NULL CHECK (on_hand >= 0),
    reserved      INTEGER NOT NULL CHECK (reserved >= 0),
    available     INTEGER NOT NULL,
    cause         TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (sku, warehouse_id)
);

-- held, released, committed (per line and warehouse) or rejected (warehouse '').
CREATE TABLE reservations (
    order_id      TEXT NOT NULL,
    sku           TEXT NOT NULL,
    warehouse_id  TEXT NOT NULL,
    quantity      INTEGER NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    expires_at    BIGINT,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku, warehouse_id)
);

CREATE TABLE payments (
    payment_id        TEXT PRIMARY KEY,
    order_id          TEXT NOT NULL,
    provider          TEXT,
    currency          TEXT NOT NULL,
    authorized_minor  BIGINT,
    captured_minor    BIGINT,
    status            TEXT NOT NULL,
    failure_code      TEXT,
    failure_message   TEXT,
    authorized_at     BIGINT,
    captured_at       BIGINT,
    failed_at         BIGINT,
    status_at         BIGINT NOT NULL
);
CREATE INDEX payments_order ON payments (order_id);

CREATE TABLE refunds (
    refund_id     TEXT PRIMARY KEY,
    payment_id    TEXT NOT NULL,
    order_id      TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    reason        TEXT NOT NULL,
    lines         JSONB NOT NULL,
    issued_at     BIGINT NOT NULL
);
CREATE INDEX refunds_order ON refunds (order_id);

CREATE TABLE shipments (
    shipment_id      TEXT PRIMARY KEY,
    order_id         TEXT NOT NULL,
    warehouse_id     TEXT,
    carrier          TEXT,
    tracking_number  TEXT,
    lines            JSONB,
    created_at       BIGINT,
    shipped_at       BIGINT,
    delivered_at     BIGINT
);
CREATE INDEX shipments_order ON shipments (order_id);

CREATE TABLE fraud_scores (
    order_id     TEXT PRIMARY KEY,
    customer_id  TEXT NOT NULL,
    score        INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    decision     TEXT NOT NULL,
    reasons      JSONB NOT NULL,
    scored_at    BIGINT NOT NULL
);
