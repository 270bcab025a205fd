-- Schema 8 on PostgreSQL: the twin of ../0008_account_mark.sql.
ALTER TABLE account_balance ADD COLUMN ledger_mark BIGINT NOT NULL DEFAULT 0;
UPDATE account_balance SET ledger_mark = (
    SELECT COALESCE(MAX(id), 0) FROM ledger WHERE at_ms < account_balance.read_at_ms
);
