-- One vendor's orders, units and GMV (its lines only) in [from, to).
SELECT toInt64(uniqExactMerge(orders)) AS orders, toInt64(sum(units)) AS units, toInt64(sum(gmv_eur_minor)) AS gmv_eur_minor
FROM rollup_vendor_hour
WHERE vendor_id = {vendor:String}
  AND hour >= fromUnixTimestamp64Milli({from:Int64}) AND hour < fromUnixTimestamp64Milli({to:Int64})
