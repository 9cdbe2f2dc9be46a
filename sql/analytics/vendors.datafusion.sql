-- Vendor performance: the twenty vendors with the highest GMV (their lines) in [from, to),
-- with their name, orders and units.
SELECT i.vendor_id AS vendor_id, MAX(d.name) AS name, CAST(COUNT(DISTINCT i.order_id) AS BIGINT) AS orders,
       CAST(SUM(i.quantity) AS BIGINT) AS units, CAST(SUM(i.line_total_eur_minor) AS BIGINT) AS gmv_eur_minor
FROM fact_order_items i
LEFT JOIN (SELECT vendor_id, name FROM (SELECT vendor_id, name,
             ROW_NUMBER() OVER (PARTITION BY vendor_id ORDER BY pos DESC) AS rn FROM dim_vendors)
           WHERE rn = 1) d ON d.vendor_id = i.vendor_id
WHERE i.occurred_at >= $from AND i.occurred_at < $to
GROUP BY i.vendor_id
ORDER BY gmv_eur_minor DESC, vendor_id
LIMIT 20
