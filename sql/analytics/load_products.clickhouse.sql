-- The newest state of every product (the analytics sink's catalogue at start-up): the row of
-- its latest catalog event in log order (ReplacingMergeTree(pos) FINAL).
SELECT event_id, toUnixTimestamp64Milli(occurred_at) AS occurred_at, product_id, vendor_id, sku, title, category, brand,
       status, price_minor, currency, toUnixTimestamp64Milli(created_at) AS created_at, pos,
       src_topic, src_partition, src_offset
FROM dim_products FINAL
