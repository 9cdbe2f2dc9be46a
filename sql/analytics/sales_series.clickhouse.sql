-- The marketplace's orders, units and GMV per hour or day (`unit`) in [from, to); `bucket`
-- is the start of the hour or UTC day in ms. Buckets without sales are absent.
SELECT toInt64(toUnixTimestamp(dateTrunc({unit:String}, hour))) * 1000 AS bucket,
       toInt64(sum(orders)) AS orders, toInt64(sum(units)) AS units, toInt64(sum(gmv_eur_minor)) AS gmv_eur_minor
FROM rollup_sales_hour
WHERE hour >= fromUnixTimestamp64Milli({from:Int64}) AND hour < fromUnixTimestamp64Milli({to:Int64})
GROUP BY bucket
ORDER BY bucket
