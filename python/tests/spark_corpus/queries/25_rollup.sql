SELECT device, country, sum(clicks) AS clicks, grouping(device) AS gd, grouping(country) AS gc
FROM impressions GROUP BY ROLLUP(device, country) ORDER BY device, country, gd, gc
