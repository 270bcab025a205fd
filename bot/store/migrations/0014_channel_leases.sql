-- Schema 14: a channel is worked by one process at a time (bot/store/leases.py): a claim
-- looks for another holder's lease on any job of the job's channel. These partial indexes
-- hold only the jobs someone holds, so that look-up stays small however many jobs wait.
CREATE INDEX tunes_held_by_channel ON tunes (channel_id, lease_expires_ms)
    WHERE lease_holder IS NOT NULL;
CREATE INDEX prompts_held_by_channel ON prompts (channel_id, lease_expires_ms)
    WHERE lease_holder IS NOT NULL;
