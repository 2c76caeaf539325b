SELECT c.campaign_id, datediff(max(i.day), c.start_date) AS days_running
FROM impressions i JOIN campaigns c ON i.campaign_id = c.campaign_id
GROUP BY c.campaign_id, c.start_date ORDER BY c.campaign_id
