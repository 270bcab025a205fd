-- Schema 9 on PostgreSQL: the twin of ../0009_erasure.sql. The one UPDATE allowed replaces
-- a member's id (as the member or as the actor) by 0 and changes nothing else.
DROP TRIGGER ledger_no_update ON ledger;

CREATE FUNCTION ledger_only_erasure() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (
        NEW.id = OLD.id AND NEW.kind = OLD.kind AND NEW.guild_id = OLD.guild_id
        AND NEW.job IS NOT DISTINCT FROM OLD.job AND NEW.amount_mc = OLD.amount_mc
        AND NEW.cost_mc IS NOT DISTINCT FROM OLD.cost_mc
        AND NEW.reserve_id IS NOT DISTINCT FROM OLD.reserve_id AND NEW.at_ms = OLD.at_ms
        AND NEW.period_at_ms = OLD.period_at_ms AND NEW.note IS NOT DISTINCT FROM OLD.note
        AND (NEW.user_id IS NOT DISTINCT FROM OLD.user_id OR NEW.user_id = 0)
        AND (NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id OR NEW.actor_id = 0)
    ) THEN
        RAISE EXCEPTION 'the ledger is append-only: record an adjust instead'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_only_erasure();
