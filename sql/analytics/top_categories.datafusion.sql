-- The ten categories with the highest GMV in [from, to).
SELECT category, CAST(SUM(quantity) AS BIGINT) AS units, CAST(SUM(line_total_eur_minor) AS BIGINT) AS gmv_eur_minor
FROM fact_order_items
WHERE occurred_at >= $from AND occurred_at < $to
GROUP BY category
ORDER BY gmv_eur_minor DESC, category
LIMIT 10
