SELECT nvl(country, 'unknown') AS country_name, sum(spend) AS spend, count(spend) AS with_spend
FROM impressions GROUP BY nvl(country, 'unknown') ORDER BY country_name
