-- One vendor's stock now: the newest level of each of its skus in each warehouse.
SELECT toInt64(sum(on_hand)) AS on_hand, toInt64(sum(available)) AS available
FROM (SELECT argMax(on_hand, (occurred_at, src_offset)) AS on_hand, argMax(available, (occurred_at, src_offset)) AS available
      FROM fact_stock_levels WHERE vendor_id = {vendor:String} GROUP BY sku, warehouse_id)
