-- Schema 13 on PostgreSQL: the twin of ../0013_leases.sql (who holds an unfinished job, and
-- until when).
ALTER TABLE tunes ADD COLUMN lease_holder TEXT;
ALTER TABLE tunes ADD COLUMN lease_expires_ms BIGINT;
ALTER TABLE prompts ADD COLUMN lease_holder TEXT;
ALTER TABLE prompts ADD COLUMN lease_expires_ms BIGINT;
ALTER TABLE tunes ADD COLUMN woken_at_ms BIGINT;
ALTER TABLE prompts ADD COLUMN woken_at_ms BIGINT;
