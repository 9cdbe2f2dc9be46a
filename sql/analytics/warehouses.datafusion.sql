-- Inventory health: per warehouse, units on hand, reserved and available now, and the skus
-- with none available (the latest level of each sku there).
SELECT warehouse_id, CAST(SUM(on_hand) AS BIGINT) AS on_hand, CAST(SUM(reserved) AS BIGINT) AS reserved,
       CAST(SUM(available) AS BIGINT) AS available,
       CAST(SUM(CASE WHEN available <= 0 THEN 1 ELSE 0 END) AS BIGINT) AS skus_out_of_stock
FROM (SELECT warehouse_id, on_hand, reserved, available,
             ROW_NUMBER() OVER (PARTITION BY sku, warehouse_id ORDER BY version DESC, src_partition DESC, src_offset DESC) AS rn
      FROM fact_stock_levels)
WHERE rn = 1
GROUP BY warehouse_id
ORDER BY warehouse_id
