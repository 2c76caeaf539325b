-- tolerance: 0.02
SELECT device, percentile_approx(spend, 0.5) AS median_spend FROM impressions GROUP BY device ORDER BY device
