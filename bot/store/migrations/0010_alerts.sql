-- Schema 10: the admins' alert channel. A server may name a channel for alerts and its
-- own low-balance threshold (NULL: the operator's LOW_BALANCE_ALERT_MC). Alerts are an
-- outbox like job_events: written in the core, posted by the Discord side, so an alert
-- written before a kill is posted after the restart and a posted one is not posted again.
-- One row per server, kind and window: a fault that repeats inside the window adds to
-- `count` (the post is edited to show it) instead of posting again.
ALTER TABLE guild_settings ADD COLUMN alert_channel_id INTEGER;
ALTER TABLE guild_settings ADD COLUMN low_balance_alert_mc INTEGER;

CREATE TABLE alerts (
    id                 INTEGER PRIMARY KEY,
    guild_id           INTEGER NOT NULL,
    kind               TEXT NOT NULL,
    opened_at_ms       INTEGER NOT NULL,  -- the window starts here
    updated_at_ms      INTEGER NOT NULL,  -- the latest fault folded in
    count              INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),
    text               TEXT NOT NULL,     -- the latest fault's words for the admins
    shown_count        INTEGER NOT NULL DEFAULT 0,  -- the count the post shows (0: unsent)
    channel_id         INTEGER,           -- where it was posted
    message_id         INTEGER,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms INTEGER,
    given_up           INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX alerts_open ON alerts (guild_id, kind, opened_at_ms);
CREATE INDEX alerts_pending ON alerts (id) WHERE shown_count < count AND given_up = 0;
