-- One vendor's orders, units and GMV (its lines only) per hour or day (`unit`) in [from, to);
-- `bucket` is the start of the hour or UTC day in ms. Buckets without sales are absent.
SELECT CAST(to_unixtime(date_trunc($unit, occurred_at)) AS BIGINT) * 1000 AS bucket,
       CAST(COUNT(DISTINCT order_id) AS BIGINT) AS orders, CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS units,
       CAST(COALESCE(SUM(line_total_eur_minor), 0) AS BIGINT) AS gmv_eur_minor
FROM fact_order_items
WHERE vendor_id = $vendor AND occurred_at >= $from AND occurred_at < $to
GROUP BY 1
ORDER BY 1
