-- Customers who registered in [from, to).
SELECT CAST(COUNT(*) AS BIGINT) AS new_customers
FROM fact_customer_events
WHERE event_type = 'CustomerRegistered' AND occurred_at >= $from AND occurred_at < $to
