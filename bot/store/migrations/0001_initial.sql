-- Schema 1: guild settings, tunes, prompts, the credit ledger and the Astria balance.
-- Times are integer milliseconds since the Unix epoch (UTC); money is integer millicents
-- (100,000 mc = $1). Discord ids are integers.

-- Per-server settings. A NULL limit means "the configured default", so changing the
-- operator's defaults reaches every server that never set its own.
CREATE TABLE guild_settings (
    guild_id              INTEGER PRIMARY KEY,
    monthly_budget_mc     INTEGER CHECK (monthly_budget_mc >= 0),
    user_daily_limit_mc   INTEGER CHECK (user_daily_limit_mc >= 0),
    user_monthly_limit_mc INTEGER CHECK (user_monthly_limit_mc >= 0),
    paused                INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    updated_at_ms         INTEGER NOT NULL
);

-- No rows for a server: every channel / every member may use the bot.
CREATE TABLE guild_channels (
    guild_id   INTEGER NOT NULL,
    channel_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
) WITHOUT ROWID;

CREATE TABLE guild_roles (
    guild_id INTEGER NOT NULL,
    role_id  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, role_id)
) WITHOUT ROWID;

CREATE TABLE guild_bans (
    guild_id     INTEGER NOT NULL,
    user_id      INTEGER NOT NULL,
    banned_by    INTEGER,
    reason       TEXT,
    banned_at_ms INTEGER NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

-- A member's fine-tune. `title` is the UUID sent to Astria (its idempotency key and the
-- lookup key after a lost answer); the photos wait on disk, listed in `photo_paths` (JSON),
-- until Astria confirms the tune.
CREATE TABLE tunes (
    id                INTEGER PRIMARY KEY,
    title             TEXT NOT NULL UNIQUE,
    owner_id          INTEGER NOT NULL,
    guild_id          INTEGER NOT NULL,
    channel_id        INTEGER NOT NULL,
    name              TEXT NOT NULL,
    name_key          TEXT NOT NULL,
    subject_class     TEXT NOT NULL,
    profile           TEXT NOT NULL,
    branch            TEXT NOT NULL,
    state             TEXT NOT NULL DEFAULT 'queued' CHECK (state IN (
                          'queued', 'submitting', 'training', 'ready', 'stuck',
                          'failed', 'cancelled', 'deleted', 'expired')),
    astria_id         INTEGER UNIQUE,
    photo_paths       TEXT NOT NULL DEFAULT '[]',
    eta_ms            INTEGER,
    trained_at_ms     INTEGER,
    expires_at_ms     INTEGER,
    status_channel_id INTEGER,
    status_message_id INTEGER,
    shared            INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),
    error             TEXT,
    created_at_ms     INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL
);

-- A name is unique among an owner's live tunes; a deleted or failed tune frees it.
CREATE UNIQUE INDEX tunes_live_name ON tunes (owner_id, name_key)
    WHERE state NOT IN ('failed', 'cancelled', 'deleted', 'expired');
CREATE INDEX tunes_owner ON tunes (owner_id, id);
CREATE INDEX tunes_shared ON tunes (guild_id, id) WHERE shared = 1;
CREATE INDEX tunes_unfinished ON tunes (id)
    WHERE state IN ('queued', 'submitting', 'training', 'stuck');

-- A generation request. Several rows may share an Astria id: with idempotency on, an
-- identical later job gets the existing prompt back.
CREATE TABLE prompts (
    id                 INTEGER PRIMARY KEY,
    owner_id           INTEGER NOT NULL,
    guild_id           INTEGER NOT NULL,
    channel_id         INTEGER NOT NULL,
    tune_id            INTEGER NOT NULL REFERENCES tunes (id),
    user_text          TEXT NOT NULL,
    final_text         TEXT NOT NULL,
    params             TEXT NOT NULL DEFAULT '{}',
    seed               INTEGER NOT NULL,
    seed_from_user     INTEGER NOT NULL DEFAULT 0 CHECK (seed_from_user IN (0, 1)),
    num_images         INTEGER NOT NULL CHECK (num_images > 0),
    astria_id          INTEGER,
    state              TEXT NOT NULL DEFAULT 'queued' CHECK (state IN (
                           'queued', 'submitting', 'generating', 'delivered', 'stuck',
                           'failed', 'undeliverable', 'cancelled')),
    image_urls         TEXT NOT NULL DEFAULT '[]',
    cost_mc            INTEGER CHECK (cost_mc >= 0),
    delivery_nonce     TEXT,
    status_channel_id  INTEGER,
    status_message_id  INTEGER,
    result_message_ids TEXT NOT NULL DEFAULT '[]',
    error              TEXT,
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL
);

CREATE INDEX prompts_owner ON prompts (owner_id, id);
CREATE INDEX prompts_tune ON prompts (tune_id);
CREATE INDEX prompts_astria ON prompts (astria_id) WHERE astria_id IS NOT NULL;
CREATE INDEX prompts_unfinished ON prompts (id)
    WHERE state IN ('queued', 'submitting', 'generating', 'stuck');

-- The credit ledger, append-only. `amount_mc` is each row's signed effect on spend:
--   reserve +price (held) | settle cost - price | release -price | adjust +/- correction
--   grant: allowance added for the month (not spend).
-- Spend in a period is SUM(amount_mc) of the non-grant rows whose `period_at_ms` falls in
-- it: a settle or release carries its reserve's instant, so a job reserved on the 31st and
-- settled on the 1st stays in the month it was reserved in.
CREATE TABLE ledger (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('reserve', 'settle', 'release', 'grant', 'adjust')),
    guild_id     INTEGER NOT NULL,
    user_id      INTEGER,
    job          TEXT,
    amount_mc    INTEGER NOT NULL CHECK (typeof(amount_mc) = 'integer'),
    cost_mc      INTEGER CHECK (cost_mc IS NULL OR (typeof(cost_mc) = 'integer' AND cost_mc >= 0)),
    reserve_id   INTEGER REFERENCES ledger (id),
    at_ms        INTEGER NOT NULL,
    period_at_ms INTEGER NOT NULL,
    actor_id     INTEGER,
    note         TEXT,
    CHECK (kind <> 'reserve' OR (user_id IS NOT NULL AND job IS NOT NULL AND amount_mc >= 0)),
    CHECK ((kind IN ('settle', 'release')) = (reserve_id IS NOT NULL)),
    CHECK ((kind = 'settle') = (cost_mc IS NOT NULL)),
    CHECK (kind <> 'grant' OR amount_mc > 0),
    CHECK (kind <> 'adjust' OR amount_mc <> 0)
);

-- One reservation per job, and at most one settle or release per reservation: settling
-- twice is impossible even for a buggy caller.
CREATE UNIQUE INDEX ledger_one_reserve_per_job ON ledger (job) WHERE kind = 'reserve';
CREATE UNIQUE INDEX ledger_one_close_per_reserve ON ledger (reserve_id)
    WHERE reserve_id IS NOT NULL;
CREATE INDEX ledger_guild_period ON ledger (guild_id, period_at_ms, kind, amount_mc);
CREATE INDEX ledger_user_period ON ledger (guild_id, user_id, period_at_ms, kind, amount_mc);
CREATE INDEX ledger_settles ON ledger (at_ms, cost_mc) WHERE kind = 'settle';

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: record an adjust instead');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: record an adjust instead');
END;

-- A settle or release must close a reserve of the same job, guild, user and period, with
-- the amount that undoes (release) or corrects (settle) exactly what was held.
CREATE TRIGGER ledger_close_matches_reserve BEFORE INSERT ON ledger
WHEN NEW.kind IN ('settle', 'release')
BEGIN
    SELECT RAISE(ABORT, 'a settle or release must close a matching reserve')
    WHERE NOT EXISTS (
        SELECT 1 FROM ledger AS r
        WHERE r.id = NEW.reserve_id AND r.kind = 'reserve' AND r.job = NEW.job
          AND r.guild_id = NEW.guild_id AND r.user_id = NEW.user_id
          AND r.period_at_ms = NEW.period_at_ms
          AND NEW.amount_mc = CASE NEW.kind
                                  WHEN 'settle' THEN NEW.cost_mc - r.amount_mc
                                  ELSE -r.amount_mc
                              END
    );
END;

-- Reservations not yet settled or released: a derived index of the ledger, kept by these
-- triggers in the same transaction as the rows, so the account check sums open holds
-- without scanning the ledger's whole history.
CREATE TABLE open_holds (
    reserve_id INTEGER PRIMARY KEY REFERENCES ledger (id),
    amount_mc  INTEGER NOT NULL
);

CREATE TRIGGER ledger_hold_opens AFTER INSERT ON ledger
WHEN NEW.kind = 'reserve'
BEGIN
    INSERT INTO open_holds (reserve_id, amount_mc) VALUES (NEW.id, NEW.amount_mc);
END;

CREATE TRIGGER ledger_hold_closes AFTER INSERT ON ledger
WHEN NEW.kind IN ('settle', 'release')
BEGIN
    DELETE FROM open_holds WHERE reserve_id = NEW.reserve_id;
END;

-- The last Astria balance read (one row), and when the request that read it was sent.
CREATE TABLE account_balance (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    balance_mc INTEGER NOT NULL,
    read_at_ms INTEGER NOT NULL
);
