SELECT advertiser, sum(spend) AS spend FROM impressions
WHERE campaign_id IN (SELECT campaign_id FROM campaigns WHERE status = 'active')
GROUP BY advertiser ORDER BY advertiser
