-- Schema 6: Astria refused a paid create for lack of credit (a 402, or a 422 saying so).
-- While `short_since_ms` is set, paid intake is paused and queued paid jobs wait; a balance
-- reading sent after it that covers `short_need_mc` (above the safety margin) clears it.
ALTER TABLE account_balance ADD COLUMN short_since_ms INTEGER;
ALTER TABLE account_balance ADD COLUMN short_need_mc INTEGER;
