-- Cohort acquisition: customers, orders and GMV per registration month and order month.
SELECT toInt64(toUnixTimestamp(toDateTime(cohort_month, 'UTC'))) * 1000 AS cohort_month,
       toInt64(toUnixTimestamp(toDateTime(order_month, 'UTC'))) * 1000 AS order_month,
       toInt64(uniqExactMerge(customers)) AS customers, toInt64(sum(orders)) AS orders, toInt64(sum(gmv_eur_minor)) AS gmv_eur_minor
FROM rollup_cohorts
GROUP BY cohort_month, order_month
ORDER BY cohort_month, order_month
