-- Timeouts and retention (numbered in step with migrations/postgres/0005_timeouts_retention.sql).
--
-- `deadline` is when the timeout sweeper fails a task or job (reason `timed_out`). The store
-- writes it with the row, from the rule in core (plan::task_deadline, JobHead::deadline): a
-- task's timeout after its last heartbeat, progress or status change (its `updated_at`), a
-- job's timeout after its `start_time`; NULL without a timeout and once terminal. The
-- sweeper reads the partial indexes below in deadline order: finding the due rows visits
-- no other row, and a row without a deadline costs its writes nothing there.
ALTER TABLE tasks ADD COLUMN deadline INTEGER;
-- Tasks written before this migration: the same rule, once (statuses 0 and 1 are pending
-- and in_progress).
UPDATE tasks SET deadline = updated_at + timeout_seconds * 1000
WHERE timeout_seconds IS NOT NULL AND status IN (0, 1);
CREATE INDEX tasks_deadline ON tasks (deadline) WHERE deadline IS NOT NULL;

ALTER TABLE jobs ADD COLUMN timeout_seconds INTEGER;
ALTER TABLE jobs ADD COLUMN deadline INTEGER;
CREATE INDEX jobs_deadline ON jobs (deadline) WHERE deadline IS NOT NULL;

-- Retention by outcome deletes the terminal jobs of one status that ended before a cutoff,
-- oldest first: a range of this index. Only terminal jobs have an end_time.
CREATE INDEX jobs_expiry ON jobs (status, end_time) WHERE end_time IS NOT NULL;
