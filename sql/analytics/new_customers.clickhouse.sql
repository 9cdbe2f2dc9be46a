-- Customers who registered in [from, to).
SELECT toInt64(sum(registrations)) AS new_customers
FROM rollup_customers_hour
WHERE hour >= fromUnixTimestamp64Milli({from:Int64}) AND hour < fromUnixTimestamp64Milli({to:Int64})
