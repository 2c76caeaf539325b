SELECT campaign_id, sort_array(collect_list(country)) AS countries
FROM impressions WHERE ad_id < 30 GROUP BY campaign_id ORDER BY campaign_id
