-- One vendor's stock now: the latest level of each of its skus in each warehouse — the
-- highest snapshot version, then the highest source position (levels written before
-- versions existed have version 0); never the newest event time.
SELECT toInt64(sum(on_hand)) AS on_hand, toInt64(sum(available)) AS available
FROM (SELECT argMax(on_hand, (version, src_partition, src_offset)) AS on_hand,
             argMax(available, (version, src_partition, src_offset)) AS available
      FROM fact_stock_levels WHERE vendor_id = {vendor:String} GROUP BY sku, warehouse_id)
