-- Nexmark q5 ("hot items") on the storefront: the most viewed products of each 10-minute
-- window, sliding every minute. Views are keyed by session, so the processor re-keys them
-- by product (`partition by`); each task holds every view of its products and emits its
-- hottest per window; the hottest overall is the maximum over the window's rows.
-- from: ProductViewed
-- to: sql.hot_products
-- key: window_start
-- partition by: product_id
-- window: hopping 10m every 1m
-- lateness: 1m
SELECT window_start, window_end, product_id, views
FROM (
    SELECT
        window_start,
        window_end,
        product_id,
        COUNT(*) AS views,
        RANK() OVER (PARTITION BY window_start ORDER BY COUNT(*) DESC) AS place
    FROM product_viewed
    GROUP BY window_start, window_end, product_id
) AS counted
WHERE place = 1
