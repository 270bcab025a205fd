-- Schema 9: a member's right to erase. The ledger stays append-only for its money: the one
-- UPDATE allowed replaces a member's id (as the member or as the actor) by 0, "an erased
-- member", and changes nothing else, so every sum of amounts stays exact while nothing in
-- it names the member any more. Rows are never deleted.
DROP TRIGGER ledger_no_update;

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
WHEN NOT (
    NEW.id = OLD.id AND NEW.kind = OLD.kind AND NEW.guild_id = OLD.guild_id
    AND NEW.job IS OLD.job AND NEW.amount_mc = OLD.amount_mc AND NEW.cost_mc IS OLD.cost_mc
    AND NEW.reserve_id IS OLD.reserve_id AND NEW.at_ms = OLD.at_ms
    AND NEW.period_at_ms = OLD.period_at_ms AND NEW.note IS OLD.note
    AND (NEW.user_id IS OLD.user_id OR NEW.user_id = 0)
    AND (NEW.actor_id IS OLD.actor_id OR NEW.actor_id = 0)
)
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: record an adjust instead');
END;
