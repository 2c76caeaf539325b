SELECT concat(c_name, ' (', c_mktsegment, ')') AS customer, count(*) AS orders, sum(o_totalprice) AS total
FROM customer JOIN orders ON c_custkey = o_custkey
GROUP BY c_name, c_mktsegment ORDER BY total DESC, customer LIMIT 20
