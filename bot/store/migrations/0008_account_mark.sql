-- Schema 8: a balance reading remembers the last ledger row written before its request
-- was sent. The account's exposure counts the settles after that row (ids only grow), not
-- the settles stamped at or after the reading's wall time: a clock set back made new
-- settles look older than the reading and left them out. Readings from before are given
-- the last row stamped before them, which is what they counted until now.
ALTER TABLE account_balance ADD COLUMN ledger_mark INTEGER NOT NULL DEFAULT 0;
UPDATE account_balance SET ledger_mark = (
    SELECT COALESCE(MAX(id), 0) FROM ledger WHERE at_ms < account_balance.read_at_ms
);
