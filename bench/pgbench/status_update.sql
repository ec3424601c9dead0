-- The statements one task status update runs in the service (PostgreSQL store), as one
-- transaction: lock the job, read the task, update it, append the history event and its
-- outbox row, update the job's counters.
\set n random(1, 128000)
SELECT task_id AS tid, job_id AS jid FROM bench_tasks WHERE n = :n \gset
BEGIN;
SELECT status, status_explicit, auto_complete, tasks_total, tasks_pending FROM jobs WHERE id = :jid FOR UPDATE;
SELECT id, job_id, type, namespace, status, attempt, start_time, meta::text FROM tasks WHERE id = :tid;
UPDATE tasks SET status = 1, heartbeat_at = now(), updated_at = now() WHERE id = :tid;
WITH h AS (
    INSERT INTO history (job_id, task_id, kind, time, from_status, to_status)
    VALUES (:jid, :tid, 'status_changed', now(), 0, 1) RETURNING seq
), o AS (INSERT INTO outbox (seq) SELECT seq FROM h)
SELECT seq FROM h;
UPDATE jobs SET tasks_pending = tasks_pending, updated_at = now() WHERE id = :jid;
COMMIT;
