SELECT date_format(event_ts, 'yyyy-MM') AS month, count(*) AS n
FROM impressions GROUP BY date_format(event_ts, 'yyyy-MM') ORDER BY month
