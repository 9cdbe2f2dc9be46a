-- The marketplace's money flow per currency in [from, to), every vendor's and the
-- disputes of orders without transfers (vendor_id ''): captured (vendors' lines), refunded,
-- transferred, commission, disputed and lost.
SELECT currency,
       CAST(SUM(captured_minor) AS BIGINT) AS captured_minor, CAST(SUM(refunded_minor) AS BIGINT) AS refunded_minor,
       CAST(SUM(transferred_minor) AS BIGINT) AS transferred_minor, CAST(SUM(commission_minor) AS BIGINT) AS commission_minor,
       CAST(SUM(disputed_minor) AS BIGINT) AS disputed_minor, CAST(SUM(dispute_lost_minor) AS BIGINT) AS dispute_lost_minor
FROM fact_vendor_money
WHERE occurred_at >= $from AND occurred_at < $to
GROUP BY currency
ORDER BY currency
