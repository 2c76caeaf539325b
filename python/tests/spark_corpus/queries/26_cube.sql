SELECT device, advertiser, count(*) AS n, grouping(device) AS gd, grouping(advertiser) AS ga
FROM impressions WHERE advertiser < 'adv_04' GROUP BY CUBE(device, advertiser) ORDER BY device, advertiser
