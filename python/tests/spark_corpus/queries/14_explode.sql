SELECT tag, count(*) AS n FROM (SELECT explode(tags) AS tag FROM impressions) t GROUP BY tag ORDER BY tag
