-- Inventory health: the sku-warehouses with 5 or fewer units available now (the latest level
-- of each: the highest snapshot version, then the highest source position), fewest first;
-- `product_id` is NULL while the catalogue has not named the sku's product.
SELECT sku, warehouse_id, NULLIF(product_id, '') AS product_id, CAST(on_hand AS BIGINT) AS on_hand, CAST(reserved AS BIGINT) AS reserved,
       CAST(available AS BIGINT) AS available
FROM (SELECT sku, warehouse_id, product_id, on_hand, reserved, available,
             ROW_NUMBER() OVER (PARTITION BY sku, warehouse_id ORDER BY version DESC, src_partition DESC, src_offset DESC) AS rn
      FROM fact_stock_levels)
WHERE rn = 1 AND available <= 5
ORDER BY available, sku, warehouse_id
LIMIT 20
