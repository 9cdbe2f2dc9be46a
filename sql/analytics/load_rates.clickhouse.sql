-- Every exchange rate seen (the analytics sink's rates at start-up).
SELECT event_id, toUnixTimestamp64Milli(occurred_at) AS occurred_at, base_currency, quote_currency, rate_e9,
       src_topic, src_partition, src_offset
FROM fact_exchange_rates ORDER BY occurred_at
