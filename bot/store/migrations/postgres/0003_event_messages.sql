-- Schema 3 on PostgreSQL: the twin of ../0003_event_messages.sql.
CREATE TABLE event_messages (
    key        TEXT NOT NULL,
    part       BIGINT NOT NULL,
    channel_id BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (key, part)
);
