SELECT day, min(unix_timestamp(event_ts)) AS first_unix, max(event_unix) AS last_unix,
       min(unix_timestamp(date_format(event_ts, 'yyyy-MM-dd'), 'yyyy-MM-dd')) AS midnight
FROM impressions GROUP BY day ORDER BY day
