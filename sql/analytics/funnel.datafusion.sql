-- Sessions in [from, to) that reached each stage: any event, a product view, a cart add, a
-- checkout, an order.
SELECT s.sessions, s.viewed, s.carted, s.checkout, o.ordered
FROM (SELECT CAST(COUNT(DISTINCT session_id) AS BIGINT) AS sessions,
             CAST(COUNT(DISTINCT CASE WHEN event_type = 'ProductViewed' THEN session_id END) AS BIGINT) AS viewed,
             CAST(COUNT(DISTINCT CASE WHEN event_type = 'CartItemAdded' THEN session_id END) AS BIGINT) AS carted,
             CAST(COUNT(DISTINCT CASE WHEN event_type = 'CheckoutStarted' THEN session_id END) AS BIGINT) AS checkout
      FROM fact_sessions WHERE occurred_at >= $from AND occurred_at < $to) s
CROSS JOIN (SELECT CAST(COUNT(DISTINCT session_id) AS BIGINT) AS ordered
            FROM fact_orders WHERE session_id <> '' AND occurred_at >= $from AND occurred_at < $to) o
