SELECT country, sum(clicks) AS clicks FROM impressions GROUP BY country ORDER BY country
