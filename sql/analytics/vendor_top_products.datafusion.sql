-- One vendor's ten best products by GMV in [from, to).
SELECT i.product_id AS product_id, MAX(p.title) AS title, MAX(i.category) AS category,
       CAST(SUM(i.quantity) AS BIGINT) AS units, CAST(SUM(i.line_total_eur_minor) AS BIGINT) AS gmv_eur_minor
FROM fact_order_items i
LEFT JOIN (SELECT product_id, title FROM (SELECT product_id, title,
             ROW_NUMBER() OVER (PARTITION BY product_id ORDER BY pos DESC) AS rn FROM dim_products)
           WHERE rn = 1) p ON p.product_id = i.product_id
WHERE i.vendor_id = $vendor AND i.occurred_at >= $from AND i.occurred_at < $to
GROUP BY i.product_id
ORDER BY gmv_eur_minor DESC, product_id
LIMIT 10
