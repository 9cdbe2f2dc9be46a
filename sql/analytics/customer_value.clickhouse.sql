-- Customer lifetime value: the ten customers with the highest GMV, all time.
SELECT customer_id, toInt64(sum(orders)) AS orders, toInt64(sum(gmv_eur_minor)) AS gmv_eur_minor,
       toUnixTimestamp64Milli(min(first_order)) AS first_order, toUnixTimestamp64Milli(max(last_order)) AS last_order
FROM rollup_customer_value
GROUP BY customer_id
ORDER BY gmv_eur_minor DESC, customer_id
LIMIT 10
