-- Fraud: the ten signals (reasons) that fired most often in [from, to). `reasons` is split
-- with split_part over positions 1..32 (this build of DataFusion has no array functions; a
-- verdict has far fewer signals than that).
SELECT reason, CAST(COUNT(*) AS BIGINT) AS orders
FROM (SELECT split_part(f.reasons, ',', n.n) AS reason
      FROM fact_fraud_scores f
      CROSS JOIN (VALUES (1),(2),(3),(4),(5),(6),(7),(8),(9),(10),(11),(12),(13),(14),(15),(16),(17),(18),(19),(20),(21),(22),(23),(24),(25),(26),(27),(28),(29),(30),(31),(32)) AS n(n)
      WHERE f.reasons != '' AND f.occurred_at >= $from AND f.occurred_at < $to)
WHERE reason != ''
GROUP BY reason
ORDER BY orders DESC, reason
LIMIT 10
