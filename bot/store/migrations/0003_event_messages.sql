-- Schema 3: the Discord messages each reported event produced, one row per part. A post
-- is recorded as soon as Discord accepts it, so a repeat after a crash skips the parts
-- already in the channel.
CREATE TABLE event_messages (
    key        TEXT NOT NULL,
    part       INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (key, part)
) WITHOUT ROWID;
