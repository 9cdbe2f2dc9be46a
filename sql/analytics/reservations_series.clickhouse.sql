-- Inventory health: orders that reserved stock and orders refused for want of it, per hour
-- in [from, to); `bucket` is the start of the hour in ms.
SELECT toInt64(toUnixTimestamp(toStartOfHour(occurred_at))) * 1000 AS bucket,
       toInt64(uniqExactIf(order_id, event_type = 'ReservationMade')) AS reserved,
       toInt64(uniqExactIf(order_id, event_type = 'ReservationRejected')) AS rejected
FROM fact_reservations
WHERE occurred_at >= fromUnixTimestamp64Milli({from:Int64}) AND occurred_at < fromUnixTimestamp64Milli({to:Int64})
GROUP BY bucket
ORDER BY bucket
