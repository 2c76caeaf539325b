SELECT device, count(DISTINCT ad_id) AS ads, count(DISTINCT campaign_id) AS campaigns,
       sum(clicks) FILTER (WHERE country = 'US') AS us_clicks
FROM impressions GROUP BY device ORDER BY device
