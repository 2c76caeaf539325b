SELECT date_format(day, 'yyyy-MM-dd') AS day_text, device, sum(cost_micros) / 1000000 AS cost, sum(cost_micros) DIV 1000000 AS whole_cost
FROM impressions WHERE day BETWEEN DATE '2026-10-28' AND DATE '2026-10-30' GROUP BY 1, 2 ORDER BY 1, 2
