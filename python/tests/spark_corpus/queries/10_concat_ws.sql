SELECT concat_ws('/', advertiser, device, country) AS k, count(*) AS n
FROM impressions WHERE ad_id < 20 GROUP BY 1 ORDER BY k
