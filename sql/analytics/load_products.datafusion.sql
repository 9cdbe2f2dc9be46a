-- The newest state of every product (the analytics sink's catalogue at start-up): the row of
-- its latest catalog event in log order (highest `pos`), as ClickHouse's FINAL keeps it.
SELECT event_id, occurred_at, product_id, vendor_id, sku, title, category, brand, status, price_minor, currency,
       created_at, pos, src_topic, src_partition, src_offset
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY product_id ORDER BY pos DESC) AS rn FROM dim_products)
WHERE rn = 1
