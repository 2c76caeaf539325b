SELECT date_trunc('week', event_ts) AS week, sum(clicks) AS clicks FROM impressions GROUP BY 1 ORDER BY 1
