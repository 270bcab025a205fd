-- Schema 4: small facts the bot keeps about itself, such as the hash of the command tree
-- it last registered with Discord (so it re-registers only when the commands changed).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
