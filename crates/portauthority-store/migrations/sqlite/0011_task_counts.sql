-- How many tasks each status holds, for `/metrics` (numbered in step with
-- migrations/postgres/0011_task_counts.sql): known without counting the tasks. The store
-- adds each write's change (`Plan::task_count_change`, from the jobs' counters) in the
-- write's own savepoint, one statement per write; deletes (retention) go through the
-- trigger below. Status codes are `Status::code`: 0 pending, 1 in_progress, 2 completed,
-- 3 failed, 4 cancelled.
CREATE TABLE task_counts (
    status INTEGER NOT NULL PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO task_counts (status, n) VALUES (0, 0), (1, 0), (2, 0), (3, 0), (4, 0);
UPDATE task_counts SET n = (SELECT COUNT(*) FROM tasks t WHERE t.status = task_counts.status);

CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
END;
