SELECT ad_id, from_unixtime(event_unix) AS at_text, from_unixtime(event_unix, 'yyyy-MM-dd HH') AS at_hour
FROM impressions WHERE ad_id = 7 ORDER BY at_text, ad_id
