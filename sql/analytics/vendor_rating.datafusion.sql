-- One vendor's reviews, all time.
SELECT CAST(COUNT(*) AS BIGINT) AS reviews, AVG(CAST(rating AS DOUBLE)) AS rating_avg
FROM fact_reviews WHERE vendor_id = $vendor
