SELECT upper(substr(advertiser, 1, 3)) AS prefix, length(advertiser) AS len, lpad(CAST(campaign_id AS STRING), 4, '0') AS cid, count(*) AS n
FROM impressions WHERE campaign_id < 6 GROUP BY 1, 2, 3 ORDER BY prefix, len, cid
