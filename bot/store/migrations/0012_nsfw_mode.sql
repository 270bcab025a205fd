-- Schema 12: how a server shows results outside age-restricted channels (Discord's
-- channel `nsfw` flag; a thread follows its parent's). 'show': as they are; 'spoiler':
-- every result image posted as a spoiler; 'refuse': new prompts there are refused, and
-- results of jobs queued before the switch are posted as spoilers. Astria flags no image,
-- so the mode applies to every result.
ALTER TABLE guild_settings ADD COLUMN nsfw_mode TEXT NOT NULL DEFAULT 'show'
    CHECK (nsfw_mode IN ('show', 'spoiler', 'refuse'));
