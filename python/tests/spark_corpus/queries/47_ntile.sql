SELECT ad_id, clicks, ntile(4) OVER (ORDER BY clicks, ad_id) AS quartile
FROM (SELECT ad_id, sum(clicks) AS clicks FROM impressions WHERE campaign_id = 3 GROUP BY ad_id) t ORDER BY ad_id
