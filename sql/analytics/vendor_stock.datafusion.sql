-- One vendor's stock now: the newest level of each of its skus in each warehouse.
SELECT CAST(COALESCE(SUM(on_hand), 0) AS BIGINT) AS on_hand, CAST(COALESCE(SUM(available), 0) AS BIGINT) AS available
FROM (SELECT on_hand, available,
             ROW_NUMBER() OVER (PARTITION BY sku, warehouse_id ORDER BY occurred_at DESC, src_offset DESC) AS rn
      FROM fact_stock_levels WHERE vendor_id = $vendor)
WHERE rn = 1
