SELECT 'mobile' AS src, count(*) AS n FROM impressions WHERE device = 'mobile'
UNION ALL SELECT 'all', count(*) FROM impressions ORDER BY src
