SELECT to_date(date_format(event_ts, 'yyyy-MM-dd')) AS d, to_date(concat('2026', '/', '11', '/', '0', '1'), 'yyyy/MM/dd') AS first_nov, count(*) AS n
FROM impressions GROUP BY 1, 2 ORDER BY 1
