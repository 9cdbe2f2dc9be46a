-- Fraud: the twenty highest-scored verdicts other than `allow` in [from, to), newest first
-- among equal scores.
SELECT CAST(to_unixtime(occurred_at) * 1000 AS BIGINT) AS at, order_id, customer_id, CAST(score AS BIGINT) AS score,
       decision, reasons
FROM fact_fraud_scores
WHERE decision != 'allow' AND occurred_at >= $from AND occurred_at < $to
ORDER BY score DESC, at DESC, order_id
LIMIT 20
