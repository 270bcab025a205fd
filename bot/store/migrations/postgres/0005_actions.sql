-- Schema 5 on PostgreSQL: the twin of ../0005_actions.sql.
ALTER TABLE tunes ADD COLUMN owner_name TEXT NOT NULL DEFAULT '';
ALTER TABLE prompts ADD COLUMN target_tune_id BIGINT;
