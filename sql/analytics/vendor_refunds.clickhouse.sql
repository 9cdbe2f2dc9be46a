-- Refunds of one vendor's lines in [from, to), base currency.
SELECT toInt64(sum(amount_eur_minor)) AS refunds_eur_minor
FROM fact_refund_lines
WHERE vendor_id = {vendor:String}
  AND occurred_at >= fromUnixTimestamp64Milli({from:Int64}) AND occurred_at < fromUnixTimestamp64Milli({to:Int64})
