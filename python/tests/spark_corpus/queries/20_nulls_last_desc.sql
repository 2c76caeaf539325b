SELECT status, count(*) AS n FROM campaigns GROUP BY status ORDER BY status DESC
