-- Schema 15: the Astria account's request budget, shared by every process on this
-- database (bot/store/budget.py). One row: the GCRA's theoretical arrival time, the slot
-- the last request was given, and until when a 429 paused every request (its
-- Retry-After). Times are microseconds since the Unix epoch on the database's clock, so the
-- processes' own clocks never need to agree.
CREATE TABLE astria_budget (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    tat          INTEGER NOT NULL DEFAULT 0,
    granted_at   INTEGER NOT NULL DEFAULT 0,
    paused_until INTEGER NOT NULL DEFAULT 0
);
INSERT INTO astria_budget (id) VALUES (1);
