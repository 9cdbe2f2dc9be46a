-- Cohort acquisition: customers, orders and GMV per registration month and order month.
SELECT cohort_month, order_month, CAST(COUNT(DISTINCT customer_id) AS BIGINT) AS customers,
       CAST(COUNT(*) AS BIGINT) AS orders, CAST(SUM(total_eur_minor) AS BIGINT) AS gmv_eur_minor
FROM (SELECT customer_id, total_eur_minor,
             date_trunc('month', CASE WHEN customer_since > TIMESTAMP '1970-01-01T00:00:00Z' THEN customer_since ELSE occurred_at END) AS cohort_month,
             date_trunc('month', occurred_at) AS order_month
      FROM fact_orders)
GROUP BY cohort_month, order_month
ORDER BY cohort_month, order_month
