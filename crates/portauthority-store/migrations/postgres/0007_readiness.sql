-- One row the readiness check writes (numbered in step with
-- migrations/sqlite/0007_readiness.sql): `/readyz` answers ready only when a write
-- commits, so a read-only server (a standby, a database set read-only) is not ready.
CREATE TABLE readiness (
    id integer     NOT NULL PRIMARY KEY,
    at timestamptz NOT NULL
);
