-- Inventory health: per warehouse, units on hand, reserved and available now, and the skus
-- with none available (the latest level of each sku there).
SELECT warehouse_id, toInt64(sum(h)) AS on_hand, toInt64(sum(r)) AS reserved, toInt64(sum(a)) AS available,
       toInt64(countIf(a <= 0)) AS skus_out_of_stock
FROM (SELECT sku, warehouse_id, argMax(on_hand, (version, src_partition, src_offset)) AS h,
             argMax(reserved, (version, src_partition, src_offset)) AS r,
             argMax(available, (version, src_partition, src_offset)) AS a
      FROM fact_stock_levels GROUP BY sku, warehouse_id)
GROUP BY warehouse_id
ORDER BY warehouse_id
