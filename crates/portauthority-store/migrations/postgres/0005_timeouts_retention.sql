-- Timeouts and retention (numbered in step with migrations/sqlite/0005_timeouts_retention.sql,
-- which explains `deadline`: when the sweeper fails the row, NULL without a timeout and once
-- terminal, written by the store from the rule in core).
--
-- A task's deadline moves with each heartbeat, so such an update is no longer a HOT update
-- for a task with a timeout; a task without one keeps NULL and stays HOT.
ALTER TABLE tasks ADD COLUMN deadline timestamptz;
-- Tasks written before this migration: the same rule, once (statuses 0 and 1 are pending
-- and in_progress).
UPDATE tasks SET deadline = updated_at + timeout_seconds * interval '1 second'
WHERE timeout_seconds IS NOT NULL AND status IN (0, 1);
CREATE INDEX tasks_deadline ON tasks (deadline) WHERE deadline IS NOT NULL;

ALTER TABLE jobs ADD COLUMN timeout_seconds bigint, ADD COLUMN deadline timestamptz;
CREATE INDEX jobs_deadline ON jobs (deadline) WHERE deadline IS NOT NULL;

-- Retention by outcome deletes the terminal jobs of one status that ended before a cutoff,
-- oldest first: a range of this index. Only terminal jobs have an end_time.
CREATE INDEX jobs_expiry ON jobs (status, end_time) WHERE end_time IS NOT NULL;
