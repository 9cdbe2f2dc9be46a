SELECT category, sum(gmv_eur_minor) / 100 AS gmv_eur, sum(units) AS units FROM rollup_product_hour WHERE hour >= $__fromTime AND hour < $__toTime GROUP BY category ORDER BY gmv_eur DESC LIMIT 15
