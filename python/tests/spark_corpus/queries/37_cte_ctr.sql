WITH daily AS (SELECT day, device, sum(clicks) AS clicks, sum(impressions) AS imps FROM impressions GROUP BY day, device)
SELECT device, max(clicks / imps) AS best_ctr, min(clicks / imps) AS worst_ctr FROM daily GROUP BY device ORDER BY device
