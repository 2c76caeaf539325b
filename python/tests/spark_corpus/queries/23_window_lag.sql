SELECT day, imps, lag(imps, 1) OVER (ORDER BY day) AS prev_imps, imps - lag(imps, 1) OVER (ORDER BY day) AS delta
FROM (SELECT day, sum(impressions) AS imps FROM impressions GROUP BY day) d ORDER BY day
