-- Checkouts with no order within 30 minutes: one session window per storefront session
-- (events closer than 30 minutes belong to one session); a session that holds a
-- CheckoutStarted and no OrderPlaced is an abandoned cart. Orders are keyed by order id, so
-- the processor re-keys them by session (`partition by`, implied by the session window).
-- from: CheckoutStarted, OrderPlaced
-- to: sql.abandoned_carts
-- key: session_id
-- window: session 30m by session_id
-- lateness: 5m
SELECT
    session_id,
    MAX(customer_id) AS customer_id,
    MAX(cart_id) AS cart_id,
    CAST(MAX(item_count) AS INT) AS item_count,
    CAST(MAX(subtotal_minor) AS BIGINT) AS subtotal_minor,
    MAX(currency) AS currency,
    MAX(occurred_at) AS checkout_at,
    MAX(window_end) AS abandoned_at
FROM checkout_started
WHERE session_id NOT IN (SELECT session_id FROM order_placed WHERE session_id IS NOT NULL)
GROUP BY session_id
