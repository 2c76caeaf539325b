SELECT l_shipmode, avg(datediff(l_receiptdate, l_shipdate)) AS avg_days, max(datediff(l_receiptdate, l_commitdate)) AS worst_late
FROM lineitem GROUP BY l_shipmode ORDER BY l_shipmode
