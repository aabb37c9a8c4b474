-- API keys (crates/access): only a SHA-256 digest of each key is stored; the
-- key itself is shown once, by `chatbot-ops keys create`. Revoked keys stay,
-- so the messages they sent still name them.
CREATE TABLE IF NOT EXISTS api_keys (
    id                  UUID PRIMARY KEY,
    name                TEXT NOT NULL CHECK (name <> ''),
    prefix              TEXT NOT NULL,
    digest              BYTEA NOT NULL UNIQUE,
    admin               BOOLEAN NOT NULL DEFAULT false,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at          TIMESTAMPTZ,
    requests_per_minute INTEGER CHECK (requests_per_minute > 0),
    concurrent_streams  INTEGER CHECK (concurrent_streams > 0)
);

-- A name picks one active key (for revoke); a revoked key's name may be reused.
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name_idx
    ON api_keys (name) WHERE revoked_at IS NULL;

-- Which key sent each message (NULL: sent with authentication off, or before it).
ALTER TABLE messages ADD COLUMN IF NOT EXISTS api_key_id UUID;
CREATE INDEX IF NOT EXISTS messages_api_key_idx ON messages (api_key_id, timestamp);
