-- One vendor's orders, units and GMV (its lines only) in [from, to).
SELECT CAST(COUNT(DISTINCT order_id) AS BIGINT) AS orders, CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS units,
       CAST(COALESCE(SUM(line_total_eur_minor), 0) AS BIGINT) AS gmv_eur_minor
FROM fact_order_items
WHERE vendor_id = $vendor AND occurred_at >= $from AND occurred_at < $to
