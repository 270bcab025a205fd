-- Schema 12: leases. An unfinished job is worked by the process holding its lease: its
-- holder's id (PROCESS_ID) and when the lease runs out, unless renewed. A job no one holds,
-- or whose lease ran out (its holder died), is claimed by the next process that asks
-- (bot/store/leases.py). Finished jobs keep whatever was last written; only unfinished
-- ones are ever claimed.
ALTER TABLE tunes ADD COLUMN lease_holder TEXT;
ALTER TABLE tunes ADD COLUMN lease_expires_ms INTEGER;
ALTER TABLE prompts ADD COLUMN lease_holder TEXT;
ALTER TABLE prompts ADD COLUMN lease_expires_ms INTEGER;
