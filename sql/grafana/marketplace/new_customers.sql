SELECT sum(registrations) AS new_customers FROM rollup_customers_hour WHERE hour >= $__fromTime AND hour < $__toTime
