-- Refunds of one vendor's lines in [from, to), base currency.
SELECT CAST(COALESCE(SUM(amount_eur_minor), 0) AS BIGINT) AS refunds_eur_minor
FROM fact_refund_lines
WHERE vendor_id = $vendor AND occurred_at >= $from AND occurred_at < $to
