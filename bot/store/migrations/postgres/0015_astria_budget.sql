-- Schema 15 on PostgreSQL: the twin of ../0015_astria_budget.sql (the Astria account's
-- request budget on one row, shared by every process).
CREATE TABLE astria_budget (
    id           BIGINT PRIMARY KEY CHECK (id = 1),
    tat          BIGINT NOT NULL DEFAULT 0,
    granted_at   BIGINT NOT NULL DEFAULT 0,
    paused_until BIGINT NOT NULL DEFAULT 0
);
INSERT INTO astria_budget (id) VALUES (1);
