-- Inventory health: the sku-warehouses with 5 or fewer units available now (the latest level
-- of each: the highest snapshot version, then the highest source position), fewest first;
-- `product_id` is NULL while the catalogue has not named the sku's product.
SELECT sku, warehouse_id, nullIf(any(product_id), '') AS product_id,
       toInt64(argMax(on_hand, (version, src_partition, src_offset))) AS on_hand,
       toInt64(argMax(reserved, (version, src_partition, src_offset))) AS reserved,
       toInt64(argMax(available, (version, src_partition, src_offset))) AS available
FROM fact_stock_levels
GROUP BY sku, warehouse_id
HAVING available <= 5
ORDER BY available, sku, warehouse_id
LIMIT 20
