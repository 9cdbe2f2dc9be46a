-- One vendor's stock now: the latest level of each of its skus in each warehouse — the
-- highest snapshot version, then the highest source position (levels written before
-- versions existed have version 0); never the newest event time.
SELECT CAST(COALESCE(SUM(on_hand), 0) AS BIGINT) AS on_hand, CAST(COALESCE(SUM(available), 0) AS BIGINT) AS available
FROM (SELECT on_hand, available,
             ROW_NUMBER() OVER (PARTITION BY sku, warehouse_id ORDER BY version DESC, src_partition DESC, src_offset DESC) AS rn
      FROM fact_stock_levels WHERE vendor_id = $vendor)
WHERE rn = 1
