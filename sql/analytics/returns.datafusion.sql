-- Orders with a return requested in [from, to), and the units asked back.
SELECT CAST(COUNT(DISTINCT order_id) AS BIGINT) AS returned_orders, CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS returned_units
FROM fact_order_requests
WHERE request_type = 'return' AND occurred_at >= $from AND occurred_at < $to
