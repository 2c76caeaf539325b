SELECT n_name, c_mktsegment, revenue, dense_rank() OVER (PARTITION BY n_name ORDER BY revenue DESC) AS rnk
FROM (SELECT n_name, c_mktsegment, sum(o_totalprice) AS revenue
      FROM customer JOIN orders ON c_custkey = o_custkey JOIN nation ON c_nationkey = n_nationkey
      GROUP BY n_name, c_mktsegment)
ORDER BY n_name, rnk, c_mktsegment
