SELECT day, clicks, sum(clicks) OVER (ORDER BY day ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
FROM (SELECT day, sum(clicks) AS clicks FROM impressions GROUP BY day) d ORDER BY day
