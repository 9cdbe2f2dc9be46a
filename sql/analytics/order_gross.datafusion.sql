-- The transfers of one order (`order`): each vendor's captured gross and where the transfer
-- sits in the log, the weights the analytics sink splits the order's disputes by.
SELECT movement_id, vendor_id, captured_minor, src_partition, src_offset
FROM fact_vendor_money
WHERE order_id = $order AND kind = 'transfer'
ORDER BY src_partition, src_offset, vendor_id
