-- API keys (numbered in step with migrations/postgres/0010_api_keys.sql, where the table is
-- explained). Times are Unix milliseconds; `scope` a JSON array of namespace patterns.
CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT,
    role         TEXT    NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    scope        TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
) WITHOUT ROWID;

-- The scope of the key that created a webhook (NULL: every namespace).
ALTER TABLE webhooks ADD COLUMN scope TEXT;
