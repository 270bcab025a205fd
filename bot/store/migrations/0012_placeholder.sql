-- Schema 12: a placeholder in this branch only, so that 0013 applies here. The real
-- 0012 is another change's; on merge this file (and its PostgreSQL twin) is dropped.
SELECT 1;
