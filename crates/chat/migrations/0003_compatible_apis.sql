-- The OpenAI- and Ollama-compatible routes (issue 14): which API each
-- exchange came through, and stateless exchanges (the client sends the
-- history itself), which belong to no session.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS api TEXT NOT NULL DEFAULT 'native'
    CHECK (api IN ('native', 'openai', 'ollama'));
ALTER TABLE messages ALTER COLUMN session_id DROP NOT NULL;
CREATE INDEX IF NOT EXISTS messages_api_idx ON messages (api, timestamp);
