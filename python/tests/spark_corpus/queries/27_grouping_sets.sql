SELECT device, day, sum(impressions) AS imps
FROM impressions GROUP BY GROUPING SETS ((device), (day), ()) ORDER BY device, day
