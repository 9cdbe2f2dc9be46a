-- One vendor's money flow per UTC day (`day`, ms) and currency in [from, to), in the order's
-- currency: captured (its lines), refunded (its share of refunds), transferred (net of
-- reversals), commission (net of what was given back), disputed (its share of disputes
-- opened) and lost (of disputes closed as lost). captured − refunded = transferred + commission.
SELECT intDiv(toUnixTimestamp64Milli(occurred_at), 86400000) * 86400000 AS day, toString(currency) AS currency,
       toInt64(sum(captured_minor)) AS captured_minor, toInt64(sum(refunded_minor)) AS refunded_minor,
       toInt64(sum(transferred_minor)) AS transferred_minor, toInt64(sum(commission_minor)) AS commission_minor,
       toInt64(sum(disputed_minor)) AS disputed_minor, toInt64(sum(dispute_lost_minor)) AS dispute_lost_minor
FROM fact_vendor_money
WHERE vendor_id = {vendor:String}
  AND occurred_at >= fromUnixTimestamp64Milli({from:Int64}) AND occurred_at < fromUnixTimestamp64Milli({to:Int64})
GROUP BY day, currency
ORDER BY day, currency
