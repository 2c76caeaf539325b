SELECT CASE WHEN spend IS NULL THEN 'none' WHEN spend < 50 THEN 'low' WHEN spend < 150 THEN 'mid' ELSE 'high' END AS tier,
       count(*) AS n, round(avg(spend), 4) AS avg_spend
FROM impressions GROUP BY 1 ORDER BY tier
