-- Numbered in step with migrations/postgres/0008_feed_horizon.sql, which corrects the
-- PostgreSQL feed's horizon stamp. SQLite's feed is in `seq` order (one writer commits in
-- that order) and has no horizon: nothing changes here.
SELECT 1;
