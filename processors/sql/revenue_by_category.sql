-- Revenue per product category per 5 minutes, in the base currency (`to_base`: the money
-- rule the sales processor uses, at the rate in force when the order was placed).
-- from: OrderPlaced
-- to: sql.revenue_by_category
-- key: category
-- window: tumbling 5m
-- lateness: 10m
-- reference: products = ProductCreated, ProductUpdated by product_id
SELECT
    o.window_start,
    o.window_end,
    COALESCE(p.category, 'uncategorized') AS category,
    base_currency() AS currency,
    CAST(SUM(to_base(CAST(get_field(o.line, 'quantity') AS BIGINT) * get_field(o.line, 'unit_price_minor'), o.currency, o.occurred_at)) AS BIGINT) AS revenue_minor,
    COUNT(DISTINCT o.order_id) AS orders,
    CAST(SUM(get_field(o.line, 'quantity')) AS BIGINT) AS units
FROM (
    SELECT order_id, currency, occurred_at, window_start, window_end, unnest(items) AS line
    FROM order_placed
) AS o
LEFT JOIN products AS p ON p.product_id = get_field(o.line, 'product_id')
GROUP BY o.window_start, o.window_end, COALESCE(p.category, 'uncategorized')
