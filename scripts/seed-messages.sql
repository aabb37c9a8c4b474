-- Deterministic rows in `messages` (after the chat migrations), for the
-- backup tests (crates/ops/tests/backup.rs) and scripts/drill-bench.sh:
--   psql -v rows=1000000 -f scripts/seed-messages.sql
-- Rows spread over 30 days, 11 users, 37 sessions, every
-- type and urgency, one failed exchange in ten, quotes, tabs and non-ASCII
-- text, NULLs.
INSERT INTO messages (id, session_id, user_id, timestamp, type, urgency, message, reply,
                      model, response_time, prompt_tokens, completion_tokens, streamed,
                      error, error_code)
SELECT md5('message ' || i)::uuid,
       md5('session ' || (i % 37))::uuid,
       'user-' || (i % 11),
       timestamptz '2026-11-01 00:00:00+00' + i * (interval '30 days' / :rows),
       (ARRAY['question', 'complaint', 'feedback', 'request'])[1 + i % 4],
       (ARRAY['LOW', 'NORMAL', 'NORMAL', 'HIGH'])[1 + i % 4],
       'message ' || i || E' with ''quotes'', a\ttab and ünïcödé',
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'reply to message ' || i END,
       'llama3.2:1b',
       20 + (i::bigint * 7919) % 3000,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 10 + i % 50 END,
       CASE WHEN i % 10 = 0 THEN NULL ELSE 5 + i % 200 END,
       i % 2 = 0,
       CASE WHEN i % 10 = 0 THEN 'llm unavailable: connection refused' END,
       CASE WHEN i % 10 = 0 THEN 'llm_unavailable' END
FROM generate_series(1, :rows) AS i;
