-- Schema 6 on PostgreSQL: the twin of ../0006_account_short.sql.
ALTER TABLE account_balance ADD COLUMN short_since_ms BIGINT;
ALTER TABLE account_balance ADD COLUMN short_need_mc BIGINT;
