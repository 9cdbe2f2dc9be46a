-- Sessions in [from, to) that reached each stage: any event, a product view, a cart add, a
-- checkout, an order.
SELECT toInt64(uniqExactMerge(sessions)) AS sessions, toInt64(uniqExactMerge(viewed)) AS viewed,
       toInt64(uniqExactMerge(carted)) AS carted, toInt64(uniqExactMerge(checkout)) AS checkout,
       toInt64(uniqExactMerge(ordered)) AS ordered
FROM rollup_funnel_hour
WHERE hour >= fromUnixTimestamp64Milli({from:Int64}) AND hour < fromUnixTimestamp64Milli({to:Int64})
