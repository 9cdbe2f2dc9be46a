-- Vendor performance: the twenty vendors with the highest GMV (their lines) in [from, to),
-- with their name, orders and units.
SELECT v.vendor_id AS vendor_id, any(d.name) AS name, toInt64(uniqExactMerge(v.orders)) AS orders,
       toInt64(sum(v.units)) AS units, toInt64(sum(v.gmv_eur_minor)) AS gmv_eur_minor
FROM rollup_vendor_hour AS v
LEFT JOIN (SELECT vendor_id, name FROM dim_vendors FINAL) AS d ON d.vendor_id = v.vendor_id
WHERE v.hour >= fromUnixTimestamp64Milli({from:Int64}) AND v.hour < fromUnixTimestamp64Milli({to:Int64})
GROUP BY v.vendor_id
ORDER BY gmv_eur_minor DESC, vendor_id
LIMIT 20
