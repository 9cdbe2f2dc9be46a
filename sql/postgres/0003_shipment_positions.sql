-- Shipments: ShipmentCreated and ShipmentShipped both set the warehouse and the lines, so
-- those two columns keep the record with the highest position in its partition
-- (`partition × 2^48 + offset`, as in 0002): a ShipmentCreated delivered again after its
-- ShipmentShipped no longer puts the created warehouse back. Every other column of a
-- shipment is set by one event only. NULL on rows written before: the next record wins.

ALTER TABLE shipments ADD COLUMN updated_pos BIGINT;
