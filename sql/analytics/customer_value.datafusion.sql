-- Customer lifetime value: the ten customers with the highest GMV, all time.
SELECT customer_id, CAST(COUNT(*) AS BIGINT) AS orders, CAST(SUM(total_eur_minor) AS BIGINT) AS gmv_eur_minor,
       MIN(occurred_at) AS first_order, MAX(occurred_at) AS last_order
FROM fact_orders
GROUP BY customer_id
ORDER BY gmv_eur_minor DESC, customer_id
LIMIT 10
