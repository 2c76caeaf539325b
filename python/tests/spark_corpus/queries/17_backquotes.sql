SELECT `advertiser`, count(`ad_id`) AS `ad count` FROM `impressions` GROUP BY `advertiser` ORDER BY `advertiser`
