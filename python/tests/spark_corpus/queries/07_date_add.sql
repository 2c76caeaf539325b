SELECT date_add(day, 7) AS next_week, date_sub(day, 1) AS prev_day, count(*) AS n
FROM impressions GROUP BY day ORDER BY next_week
