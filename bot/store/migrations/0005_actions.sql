-- Schema 5: what the use-case layer decides once and the rest of the bot reads back.
-- `owner_name`: the member's display name when the tune was made (cleaned), so pickers
-- never show a raw id; `target_tune_id`: the Astria tune a prompt is posted to (the tune
-- itself, or the profile's base tune with a tag in the text), decided when the prompt is
-- accepted. NULL on rows from before: the tracker derives it for those.
ALTER TABLE tunes ADD COLUMN owner_name TEXT NOT NULL DEFAULT '';
ALTER TABLE prompts ADD COLUMN target_tune_id INTEGER;
