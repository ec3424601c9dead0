-- A job's rate of finishing tasks (numbered in step with migrations/postgres/0009_job_rate.sql).
-- What `portauthority_core::progress::Rate` keeps, written by the same UPDATE that moves the
-- job's counters: never computed by scanning tasks. Existing jobs start with no samples.
--   rate_samples  finishes counted since the first one (which opens the window)
--   rate_weight   those finishes, each decayed by its age, as of rate_last
--   rate_since    when the first task finished (ms since the epoch)
--   rate_last     when a task last finished (ms since the epoch)
ALTER TABLE jobs ADD COLUMN rate_samples INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN rate_weight REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN rate_since INTEGER;
ALTER TABLE jobs ADD COLUMN rate_last INTEGER;
