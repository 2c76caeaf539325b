SELECT device, sum(clicks) / count(*) AS clicks_per_row, sum(clicks) DIV count(*) AS whole, 7 / 2 AS half
FROM impressions GROUP BY device ORDER BY device
