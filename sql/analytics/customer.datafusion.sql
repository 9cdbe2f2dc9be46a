-- One customer's lifetime: orders, GMV (base currency), first and last order, all time
-- (GET /v1/analytics/customers/{id}).
SELECT customer_id, CAST(COUNT(*) AS BIGINT) AS orders, CAST(SUM(total_eur_minor) AS BIGINT) AS gmv_eur_minor,
       MIN(occurred_at) AS first_order, MAX(occurred_at) AS last_order
FROM fact_orders
WHERE customer_id = $customer
GROUP BY customer_id
