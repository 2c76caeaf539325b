-- tolerance: 0.05
SELECT device, approx_count_distinct(ad_id) AS ads FROM impressions GROUP BY device ORDER BY device
