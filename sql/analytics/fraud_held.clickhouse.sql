-- Fraud: the twenty highest-scored verdicts other than `allow` in [from, to), newest first
-- among equal scores.
SELECT toUnixTimestamp64Milli(occurred_at) AS at, order_id, customer_id, toInt64(score) AS score,
       toString(decision) AS decision, reasons
FROM fact_fraud_scores
WHERE decision != 'allow'
  AND occurred_at >= fromUnixTimestamp64Milli({from:Int64}) AND occurred_at < fromUnixTimestamp64Milli({to:Int64})
ORDER BY score DESC, at DESC, order_id
LIMIT 20
