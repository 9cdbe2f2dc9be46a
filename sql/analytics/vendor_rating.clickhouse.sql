-- One vendor's reviews, all time.
SELECT toInt64(count()) AS reviews, if(count() = 0, NULL, avg(rating)) AS rating_avg
FROM fact_reviews WHERE vendor_id = {vendor:String}
