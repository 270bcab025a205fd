-- Schema 11: the per-image tools. `tool` says what made a prompt ('imagine', 'reroll',
-- 'edit', 'upscale', 'vary'); `parent_id` is the prompt it was made from and `image_index`
-- the image of it (0-based) an upscale or a variation starts from. The image link and the
-- strengths themselves go with the other Astria options in `params`.
ALTER TABLE prompts ADD COLUMN tool TEXT NOT NULL DEFAULT 'imagine'
    CHECK (tool IN ('imagine', 'reroll', 'edit', 'upscale', 'vary'));
ALTER TABLE prompts ADD COLUMN parent_id INTEGER REFERENCES prompts (id);
ALTER TABLE prompts ADD COLUMN image_index INTEGER CHECK (image_index IS NULL OR image_index >= 0);
