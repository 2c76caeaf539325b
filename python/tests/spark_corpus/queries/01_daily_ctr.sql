SELECT day, sum(clicks) AS clicks, sum(impressions) AS imps, sum(clicks) / sum(impressions) AS ctr
FROM impressions GROUP BY day ORDER BY day
