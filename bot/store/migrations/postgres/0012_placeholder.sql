-- Schema 12 on PostgreSQL: the twin of ../0012_placeholder.sql (dropped on merge).
SELECT 1;
