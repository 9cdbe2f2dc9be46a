-- The marketplace's orders, units and GMV per hour or day (`unit`) in [from, to); `bucket`
-- is the start of the hour or UTC day in ms. Buckets without sales are absent.
SELECT CAST(to_unixtime(date_trunc($unit, occurred_at)) AS BIGINT) * 1000 AS bucket,
       CAST(COUNT(*) AS BIGINT) AS orders, CAST(COALESCE(SUM(units), 0) AS BIGINT) AS units,
       CAST(COALESCE(SUM(total_eur_minor), 0) AS BIGINT) AS gmv_eur_minor
FROM fact_orders
WHERE occurred_at >= $from AND occurred_at < $to
GROUP BY 1
ORDER BY 1
