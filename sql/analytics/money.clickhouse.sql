-- The marketplace's money flow per currency in [from, to), every vendor's and the
-- disputes of orders without transfers (vendor_id ''): captured (vendors' lines), refunded,
-- transferred, commission, disputed and lost.
SELECT toString(currency) AS currency,
       toInt64(sum(captured_minor)) AS captured_minor, toInt64(sum(refunded_minor)) AS refunded_minor,
       toInt64(sum(transferred_minor)) AS transferred_minor, toInt64(sum(commission_minor)) AS commission_minor,
       toInt64(sum(disputed_minor)) AS disputed_minor, toInt64(sum(dispute_lost_minor)) AS dispute_lost_minor
FROM fact_vendor_money
WHERE occurred_at >= fromUnixTimestamp64Milli({from:Int64}) AND occurred_at < fromUnixTimestamp64Milli({to:Int64})
GROUP BY currency
ORDER BY currency
