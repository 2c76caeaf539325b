SELECT date_format(o_orderdate, 'yyyy-MM') AS month, o_orderpriority, count(*) AS orders, sum(o_totalprice) AS total
FROM orders WHERE year(o_orderdate) = 1995 GROUP BY 1, 2 ORDER BY 1, 2
