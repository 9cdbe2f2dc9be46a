-- The ten categories with the highest GMV in [from, to).
SELECT category, toInt64(sum(units)) AS units, toInt64(sum(gmv_eur_minor)) AS gmv_eur_minor
FROM rollup_product_hour
WHERE hour >= fromUnixTimestamp64Milli({from:Int64}) AND hour < fromUnixTimestamp64Milli({to:Int64})
GROUP BY category
ORDER BY gmv_eur_minor DESC, category
LIMIT 10
