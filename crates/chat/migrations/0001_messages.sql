-- One row per chat exchange, failed ones included (error set).
-- Columns read by the operations reports: timestamp, user_id, response_time
-- (milliseconds), urgency, error.
CREATE TABLE IF NOT EXISTS messages (
    id                UUID PRIMARY KEY,
    session_id        UUID NOT NULL,
    user_id           TEXT NOT NULL,
    timestamp         TIMESTAMPTZ NOT NULL DEFAULT now(),
    type              TEXT NOT NULL,
    urgency           TEXT NOT NULL CHECK (urgency IN ('LOW', 'NORMAL', 'HIGH')),
    message           TEXT NOT NULL,
    reply             TEXT,
    model             TEXT NOT NULL,
    response_time     INTEGER NOT NULL CHECK (response_time >= 0),
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    streamed          BOOLEAN NOT NULL DEFAULT false,
    error             TEXT,
    error_code        TEXT
);

CREATE INDEX IF NOT EXISTS messages_timestamp_idx ON messages (timestamp);
CREATE INDEX IF NOT EXISTS messages_session_idx ON messages (session_id, timestamp);
CREATE INDEX IF NOT EXISTS messages_user_idx ON messages (user_id, timestamp);
