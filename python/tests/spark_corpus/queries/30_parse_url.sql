SELECT parse_url(url, 'HOST') AS host, count(*) AS n FROM impressions GROUP BY 1 ORDER BY host
