-- Fraud: the ten signals (reasons) that fired most often in [from, to).
SELECT reason, toInt64(count()) AS orders
FROM fact_fraud_scores ARRAY JOIN splitByChar(',', reasons) AS reason
WHERE reasons != ''
  AND occurred_at >= fromUnixTimestamp64Milli({from:Int64}) AND occurred_at < fromUnixTimestamp64Milli({to:Int64})
GROUP BY reason
ORDER BY orders DESC, reason
LIMIT 10
