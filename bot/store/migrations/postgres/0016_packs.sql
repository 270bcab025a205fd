-- Schema 16 on PostgreSQL (the twin of ../0016_packs.sql): pack runs (`/pack run`). A run is a prompt row of its own (it holds the one
-- reservation for the pack's price and never reaches Astria as a prompt); `pack_runs`
-- says which Astria pack it runs on which Astria tune and, before the POST, which of that
-- tune's prompts Astria already had (`seen_ids`, a JSON array; NULL: not listed yet), so a
-- lost answer is recovered by listing the tune's prompts and adopting the new ones of the
-- pack instead of posting it again. `pack_items` are the prompts the pack made, each a
-- prompt row followed and delivered like any other. No foreign keys: erasure and
-- retention delete prompt rows on their own terms.
CREATE TABLE pack_runs (
    prompt_id      BIGINT PRIMARY KEY,
    pack_id        BIGINT NOT NULL,
    pack_title     TEXT NOT NULL,
    astria_tune_id BIGINT NOT NULL,
    seen_ids       TEXT,
    posted_at_ms   BIGINT
);
CREATE TABLE pack_items (
    prompt_id BIGINT PRIMARY KEY,
    run_id    BIGINT NOT NULL
);
CREATE INDEX pack_items_run ON pack_items (run_id);
