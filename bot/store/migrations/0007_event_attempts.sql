-- Schema 7 (event delivery attempts): how often reporting an outbox event failed, how
-- many of those were the channel refusing for good, and when to try next. Kept in the
-- row so a restart neither retries at once nor forgets how close an event is to its
-- DM fallback and `undeliverable`.
ALTER TABLE job_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_events ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
ALTER TABLE job_events ADD COLUMN next_attempt_at_ms INTEGER;
