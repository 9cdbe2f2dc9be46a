-- Fraud: orders scored per decision in [from, to), and their average score.
SELECT decision, CAST(COUNT(DISTINCT order_id) AS BIGINT) AS orders, CAST(AVG(score) AS DOUBLE) AS avg_score
FROM fact_fraud_scores
WHERE occurred_at >= $from AND occurred_at < $to
GROUP BY decision
ORDER BY decision
