-- A job's rate of finishing tasks (numbered in step with migrations/sqlite/0009_job_rate.sql).
-- What `portauthority_core::progress::Rate` keeps, written by the same UPDATE that moves the
-- job's counters: never computed by scanning tasks. Existing jobs start with no samples.
-- Columns with a constant default and no index: adding them rewrites nothing.
--   rate_samples  finishes counted since the first one (which opens the window)
--   rate_weight   those finishes, each decayed by its age, as of rate_last
--   rate_since    when the first task finished
--   rate_last     when a task last finished
ALTER TABLE jobs
    ADD COLUMN rate_samples bigint NOT NULL DEFAULT 0,
    ADD COLUMN rate_weight double precision NOT NULL DEFAULT 0,
    ADD COLUMN rate_since timestamptz,
    ADD COLUMN rate_last timestamptz;
