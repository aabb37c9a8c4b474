-- The OpenAI- and Ollama-compatible routes (issue 14): which API each
-- exchange came through, and stateless exchanges (the client sends the
-- history itself), which belong to no session. No index on api: every
-- index costs each insert, and reports by API scan a time range anyway.
ALTER TABLE messages ADD COLUMN IF NOT EXISTS api TEXT NOT NULL DEFAULT 'native'
    CHECK (api IN ('native', 'openai', 'ollama'));
ALTER TABLE messages ALTER COLUMN session_id DROP NOT NULL;
