-- What decides which state is newer: versions and log positions, not event time.
--
-- A row built from a processor's snapshot (StockLevelChanged, OrderStatusChanged) keeps the
-- snapshot with the highest `version` (one more per change of that entity in the
-- processor's state). A row built from a topic without versions keeps the record with the
-- highest position in its partition, `partition × 2^48 + offset` (sinks/src/runner.rs,
-- Item::position): one entity's events all live in one partition, in processing order.
-- The guards below replace the event-time comparisons of 0001 (`status_at <= …`); the
-- `*_at` columns stay as data: when things happened.
--
-- The columns are nullable: rows written before this migration have no guard yet, and the
-- next record about them wins.

ALTER TABLE vendors ADD COLUMN updated_pos BIGINT;
ALTER TABLE products ADD COLUMN catalog_pos BIGINT;
ALTER TABLE products ADD COLUMN price_pos BIGINT;
ALTER TABLE customers ADD COLUMN registered_pos BIGINT;
ALTER TABLE orders ADD COLUMN placed_pos BIGINT;
ALTER TABLE orders ADD COLUMN status_version BIGINT;
ALTER TABLE inventory ADD COLUMN version BIGINT;
ALTER TABLE reservations ADD COLUMN updated_pos BIGINT;
ALTER TABLE payments ADD COLUMN status_pos BIGINT;
ALTER TABLE fraud_scores ADD COLUMN scored_pos BIGINT;
