-- One vendor's money flow per UTC day (`day`, ms) and currency in [from, to), in the order's
-- currency: captured (its lines), refunded (its share of refunds), transferred (net of
-- reversals), commission (net of what was given back), disputed (its share of disputes
-- opened) and lost (of disputes closed as lost). captured − refunded = transferred + commission.
SELECT CAST(to_unixtime(date_trunc('day', occurred_at)) AS BIGINT) * 1000 AS day, currency,
       CAST(SUM(captured_minor) AS BIGINT) AS captured_minor, CAST(SUM(refunded_minor) AS BIGINT) AS refunded_minor,
       CAST(SUM(transferred_minor) AS BIGINT) AS transferred_minor, CAST(SUM(commission_minor) AS BIGINT) AS commission_minor,
       CAST(SUM(disputed_minor) AS BIGINT) AS disputed_minor, CAST(SUM(dispute_lost_minor) AS BIGINT) AS dispute_lost_minor
FROM fact_vendor_money
WHERE vendor_id = $vendor AND occurred_at >= $from AND occurred_at < $to
GROUP BY 1, 2
ORDER BY 1, 2
