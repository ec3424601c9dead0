-- How many tasks each status holds, for `/metrics` (numbered in step with
-- migrations/sqlite/0011_task_counts.sql): known without counting the tasks. As with
-- job_counts (0002_list_performance.sql), writers only append deltas, never update a shared
-- row: the store with each write that changes counters (`Plan::task_count_change`, one
-- scalar statement in the write's transaction), the trigger below for deletes (retention,
-- by cascade from jobs). The count folder moves them into task_counts about once a second,
-- and a read sums both tables in one snapshot. Status codes are `Status::code`: 0 pending,
-- 1 in_progress, 2 completed, 3 failed, 4 cancelled.
CREATE TABLE task_counts (
    status smallint NOT NULL PRIMARY KEY,
    n      bigint   NOT NULL
);
CREATE TABLE task_count_deltas (
    status smallint NOT NULL,
    n      bigint   NOT NULL
);

CREATE FUNCTION pa_task_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_count_deltas (status, n)
    SELECT status, -count(*) FROM old_tasks GROUP BY status;
    RETURN NULL;
END
$$;
-- Before the backfill reads tasks: a delete committed meanwhile is counted once.
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION pa_task_counts_delete();

-- The backfill locks tasks against writes until this migration commits, so that no write
-- falls between the count and the first deltas.
LOCK TABLE tasks IN SHARE MODE;
INSERT INTO task_counts (status, n)
SELECT s, (SELECT count(*) FROM tasks WHERE status = s) FROM generate_series(0, 4) AS s;
