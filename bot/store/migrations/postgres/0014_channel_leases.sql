-- Schema 14 on PostgreSQL: the twin of ../0014_channel_leases.sql (the held jobs of each
-- channel, for the claim's one-holder-per-channel look-up).
CREATE INDEX tunes_held_by_channel ON tunes (channel_id, lease_expires_ms)
    WHERE lease_holder IS NOT NULL;
CREATE INDEX prompts_held_by_channel ON prompts (channel_id, lease_expires_ms)
    WHERE lease_holder IS NOT NULL;
