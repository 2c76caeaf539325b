SELECT year(day) AS y, month(day) AS m, dayofweek(day) AS dow, dayofmonth(day) AS dom, count(*) AS n
FROM impressions GROUP BY 1, 2, 3, 4 ORDER BY y, m, dom
