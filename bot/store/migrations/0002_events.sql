-- Schema 2: the outbox of job events (ready, done, failed, stuck, cancelled, expiry).
-- An event is written once per key before the job's end is reported, so a crash between
-- the two repeats the report under the same key and never skips it.
CREATE TABLE job_events (
    key            TEXT PRIMARY KEY,
    job            TEXT NOT NULL,
    kind           TEXT NOT NULL,
    payload        TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    reported_at_ms INTEGER,
    outcome        TEXT
);

CREATE INDEX job_events_pending ON job_events (created_at_ms) WHERE reported_at_ms IS NULL;
CREATE INDEX job_events_job ON job_events (job);

-- When a job was handed to Astria: prompts carry no eta, so their first check counts
-- from here, also after a restart.
ALTER TABLE tunes ADD COLUMN submitted_at_ms INTEGER;
ALTER TABLE prompts ADD COLUMN submitted_at_ms INTEGER;

CREATE INDEX tunes_expiring ON tunes (expires_at_ms) WHERE state = 'ready';
CREATE INDEX prompts_text_seed ON prompts (seed, final_text);
