-- API keys. A token is `pa_<id>_<secret>`; only the SHA-256 of the secret is kept
-- (`secret_hash`), and a key is looked up by `id` (the primary key) and compared in constant
-- time by the server. `scope` is the key's namespace patterns, a JSON array (`["com.a.*"]`).
-- A revoked key keeps its row (`revoked_at`), so that `keys list` shows it and so that a
-- database that has ever had a key keeps requiring one. `last_used_at` is written at most
-- once a minute per key and process, off the request path.
CREATE TABLE api_keys (
    id           text        COLLATE "C" NOT NULL PRIMARY KEY,
    name         text,
    role         text        NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
    scope        text        NOT NULL,
    secret_hash  bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- A webhook delivers only events of jobs its creator's key could see (NULL: every
-- namespace, a webhook made without keys). JSON, as `api_keys.scope`.
ALTER TABLE webhooks ADD COLUMN scope text;
