SELECT advertiser, ad_id, clicks, rn FROM (
  SELECT advertiser, ad_id, sum(clicks) AS clicks,
         row_number() OVER (PARTITION BY advertiser ORDER BY sum(clicks) DESC, ad_id) AS rn
  FROM impressions GROUP BY advertiser, ad_id) t
WHERE rn <= 3 ORDER BY advertiser, rn
