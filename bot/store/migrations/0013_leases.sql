-- Schema 13: leases. An unfinished job is worked by the process holding its lease: its
-- holder's id (PROCESS_ID) and when the lease runs out, unless renewed. A job no one holds,
-- or whose lease ran out (its holder died), is claimed by the next process that asks
-- (bot/store/leases.py); so is a finished job with an event not yet reported (its holder
-- reports it). `woken_at_ms`: a callback reached a process that does not hold
-- the job, and asks its holder to look at it now.
ALTER TABLE tunes ADD COLUMN lease_holder TEXT;
ALTER TABLE tunes ADD COLUMN lease_expires_ms INTEGER;
ALTER TABLE prompts ADD COLUMN lease_holder TEXT;
ALTER TABLE prompts ADD COLUMN lease_expires_ms INTEGER;
ALTER TABLE tunes ADD COLUMN woken_at_ms INTEGER;
ALTER TABLE prompts ADD COLUMN woken_at_ms INTEGER;
