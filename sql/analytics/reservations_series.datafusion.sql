-- Inventory health: orders that reserved stock and orders refused for want of it, per hour
-- in [from, to); `bucket` is the start of the hour in ms.
SELECT CAST(to_unixtime(date_trunc('hour', occurred_at)) AS BIGINT) * 1000 AS bucket,
       CAST(COUNT(DISTINCT CASE WHEN event_type = 'ReservationMade' THEN order_id END) AS BIGINT) AS reserved,
       CAST(COUNT(DISTINCT CASE WHEN event_type = 'ReservationRejected' THEN order_id END) AS BIGINT) AS rejected
FROM fact_reservations
WHERE occurred_at >= $from AND occurred_at < $to
GROUP BY 1
ORDER BY 1
