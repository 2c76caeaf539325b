SELECT size(tags) AS n_tags, count(*) AS n FROM impressions GROUP BY size(tags) ORDER BY n_tags
