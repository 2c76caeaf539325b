SELECT c.name, sum(i.spend) AS spend, c.budget
FROM campaigns c JOIN impressions i ON c.campaign_id = i.campaign_id
GROUP BY c.name, c.budget HAVING sum(i.spend) > 0.5 * c.budget ORDER BY c.name
