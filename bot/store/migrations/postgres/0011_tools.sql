-- Schema 11 on PostgreSQL: the twin of ../0011_tools.sql (what made a prompt, from which
-- result and image).
ALTER TABLE prompts ADD COLUMN tool TEXT NOT NULL DEFAULT 'imagine'
    CHECK (tool IN ('imagine', 'reroll', 'edit', 'upscale', 'vary'));
ALTER TABLE prompts ADD COLUMN parent_id BIGINT REFERENCES prompts (id);
ALTER TABLE prompts ADD COLUMN image_index BIGINT CHECK (image_index IS NULL OR image_index >= 0);
