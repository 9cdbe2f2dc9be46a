SELECT hour AS time, sum(gmv_eur_minor) / 100 AS gmv_eur FROM rollup_sales_hour WHERE hour >= $__fromTime AND hour < $__toTime GROUP BY hour ORDER BY hour
