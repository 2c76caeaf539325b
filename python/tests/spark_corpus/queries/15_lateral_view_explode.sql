SELECT i.device, tv.tag, sum(i.clicks) AS clicks
FROM impressions i LATERAL VIEW explode(i.tags) tv AS tag
GROUP BY i.device, tv.tag ORDER BY i.device, tv.tag
