-- Schema 4 on PostgreSQL: the twin of ../0004_meta.sql.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
