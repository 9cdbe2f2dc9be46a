-- Orders, units and GMV (base currency) placed in [from, to), from the fact table.
SELECT CAST(COUNT(*) AS BIGINT) AS orders, CAST(COALESCE(SUM(units), 0) AS BIGINT) AS units,
       CAST(COALESCE(SUM(total_eur_minor), 0) AS BIGINT) AS gmv_eur_minor
FROM fact_orders
WHERE occurred_at >= $from AND occurred_at < $to
