-- Schema 7 on PostgreSQL: the twin of ../0007_event_attempts.sql.
ALTER TABLE job_events ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE job_events ADD COLUMN refusals BIGINT NOT NULL DEFAULT 0;
ALTER TABLE job_events ADD COLUMN next_attempt_at_ms BIGINT;
