SELECT advertiser, concat_ws(',', sort_array(collect_set(device))) AS devices, size(collect_list(device)) AS n
FROM impressions GROUP BY advertiser ORDER BY advertiser
