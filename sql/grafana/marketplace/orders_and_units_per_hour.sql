SELECT hour AS time, sum(orders) AS orders, sum(units) AS units FROM rollup_sales_hour WHERE hour >= $__fromTime AND hour < $__toTime GROUP BY hour ORDER BY hour
