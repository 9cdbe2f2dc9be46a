-- Orders, units and GMV (base currency) placed in [from, to), from the hourly rollup.
SELECT toInt64(sum(orders)) AS orders, toInt64(sum(units)) AS units, toInt64(sum(gmv_eur_minor)) AS gmv_eur_minor
FROM rollup_sales_hour
WHERE hour >= fromUnixTimestamp64Milli({from:Int64}) AND hour < fromUnixTimestamp64Milli({to:Int64})
