-- Schema 2 on PostgreSQL: the twin of ../0002_events.sql.
CREATE TABLE job_events (
    key            TEXT PRIMARY KEY,
    job            TEXT NOT NULL,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    reported_at_ms BIGINT,
    outcome        TEXT
);

CREATE INDEX job_events_pending ON job_events (created_at_ms) WHERE reported_at_ms IS NULL;
CREATE INDEX job_events_job ON job_events (job);

ALTER TABLE tunes ADD COLUMN submitted_at_ms BIGINT;
ALTER TABLE prompts ADD COLUMN submitted_at_ms BIGINT;

CREATE INDEX tunes_expiring ON tunes (expires_at_ms) WHERE state = 'ready';
CREATE INDEX prompts_text_seed ON prompts (seed, final_text);
