SELECT if(clicks > 10, 'high', 'low') AS bucket, count(*) AS n, sum(clicks) AS clicks
FROM impressions GROUP BY if(clicks > 10, 'high', 'low') ORDER BY bucket
