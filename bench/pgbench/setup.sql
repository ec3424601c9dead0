-- Seeds a migrated Port Authority database for pgbench: 64 jobs of 2,000 pending tasks, and
-- a numbered list of the tasks so a transaction can pick one at random.
INSERT INTO jobs (id, type, namespace, status, auto_complete, start_time, tasks_total,
                  tasks_pending, meta, created_at, updated_at)
SELECT gen_random_uuid(), 'bench', 'com.bench', 0, false, now(), 2000, 2000, '{}', now(), now()
FROM generate_series(1, 64);

INSERT INTO tasks (id, job_id, type, namespace, status, start_time, meta, created_at, updated_at)
SELECT gen_random_uuid(), j.id, 'step', 'com.bench.tasks', 0, now(), '{}', now(), now()
FROM jobs j, generate_series(1, 2000);

CREATE TABLE bench_tasks AS
SELECT row_number() OVER () AS n, id AS task_id, job_id FROM tasks;
CREATE UNIQUE INDEX ON bench_tasks (n);
ANALYZE;
