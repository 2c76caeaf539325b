SELECT device, country, clicks, clicks / sum(clicks) OVER (PARTITION BY device) AS share
FROM (SELECT device, country, sum(clicks) AS clicks FROM impressions GROUP BY device, country) t
ORDER BY device, country
