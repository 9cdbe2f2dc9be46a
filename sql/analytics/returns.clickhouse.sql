-- Orders with a return requested in [from, to), and the units asked back.
SELECT toInt64(uniqExactMerge(returned_orders)) AS returned_orders, toInt64(sum(returned_units)) AS returned_units
FROM rollup_returns_hour
WHERE hour >= fromUnixTimestamp64Milli({from:Int64}) AND hour < fromUnixTimestamp64Milli({to:Int64})
