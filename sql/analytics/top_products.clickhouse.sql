-- The ten products with the highest GMV in [from, to).
SELECT r.product_id AS product_id, any(p.title) AS title, any(r.category) AS category,
       toInt64(sum(r.units)) AS units, toInt64(sum(r.gmv_eur_minor)) AS gmv_eur_minor
FROM rollup_product_hour AS r
LEFT JOIN (SELECT product_id, title FROM dim_products FINAL) AS p ON p.product_id = r.product_id
WHERE r.hour >= fromUnixTimestamp64Milli({from:Int64}) AND r.hour < fromUnixTimestamp64Milli({to:Int64})
GROUP BY r.product_id
ORDER BY gmv_eur_minor DESC, product_id
LIMIT 10
