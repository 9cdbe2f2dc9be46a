-- Fraud: orders scored per decision in [from, to), and their average score.
SELECT toString(decision) AS decision, toInt64(uniqExact(order_id)) AS orders, toFloat64(avg(score)) AS avg_score
FROM fact_fraud_scores
WHERE occurred_at >= fromUnixTimestamp64Milli({from:Int64}) AND occurred_at < fromUnixTimestamp64Milli({to:Int64})
GROUP BY decision
ORDER BY decision
