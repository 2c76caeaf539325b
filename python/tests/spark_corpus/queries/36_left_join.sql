SELECT c.campaign_id, coalesce(sum(i.clicks), 0) AS clicks
FROM campaigns c LEFT JOIN impressions i ON c.campaign_id = i.campaign_id AND i.day = DATE '2026-11-01'
GROUP BY c.campaign_id ORDER BY c.campaign_id
