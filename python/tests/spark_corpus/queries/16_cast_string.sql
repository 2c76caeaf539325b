SELECT CAST(campaign_id AS STRING) AS cid, CAST(sum(impressions) AS STRING) AS imps
FROM impressions GROUP BY campaign_id ORDER BY cid
