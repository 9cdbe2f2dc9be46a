-- One customer's lifetime: orders, GMV (base currency), first and last order, all time
-- (GET /v1/analytics/customers/{id}), from the per-customer rollup.
SELECT customer_id, toInt64(sum(orders)) AS orders, toInt64(sum(gmv_eur_minor)) AS gmv_eur_minor,
       toUnixTimestamp64Milli(min(first_order)) AS first_order, toUnixTimestamp64Milli(max(last_order)) AS last_order
FROM rollup_customer_value
WHERE customer_id = {customer:String}
GROUP BY customer_id
