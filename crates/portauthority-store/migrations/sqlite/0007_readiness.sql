-- One row the readiness check writes (numbered in step with
-- migrations/postgres/0007_readiness.sql): `/readyz` answers ready only when a write
-- commits, so a read-only or full database is reported as not ready.
CREATE TABLE readiness (
    id INTEGER NOT NULL PRIMARY KEY,
    at INTEGER NOT NULL
);
