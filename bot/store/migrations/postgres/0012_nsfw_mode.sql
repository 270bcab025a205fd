-- Schema 12 on PostgreSQL: the twin of ../0012_nsfw_mode.sql (a server's NSFW mode).
ALTER TABLE guild_settings ADD COLUMN nsfw_mode TEXT NOT NULL DEFAULT 'show'
    CHECK (nsfw_mode IN ('show', 'spoiler', 'refuse'));
