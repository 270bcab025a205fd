"""One effective answer to "is idempotency on at Astria?", settled at start.

`ASTRIA_IDEMPOTENCY` is what the operator states (`auto`, true or false); the probe
(bot/astria/probe.py) is what Astria shows. The last conclusive probe is kept in the store
with its time and reused for a day. With `auto` the bot believes the probe (off, the safe
reading under either account setting, when nothing was ever found); a stated value that
the probe contradicts stops the start with one line saying what was found and the fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bot.astria.client import AstriaClient
from bot.astria.probe import ProbeResult, probe_idempotency
from bot.store.meta import IdempotencyProbe, Meta

log = logging.getLogger(__name__)

PROBE_MAX_AGE = timedelta(days=1)
Stated = bool | Literal["auto"]


def _word(on: bool) -> str:
    return "on" if on else "off"


def _stated(value: Stated) -> str:
    return value if isinstance(value, str) else str(value).lower()


class IdempotencyContradiction(Exception):
    """ASTRIA_IDEMPOTENCY says one thing, Astria's answers the other (one line)."""

    def __init__(self, stated: bool, found: IdempotencyProbe) -> None:
        self.stated = stated
        self.found = found
        when = found.at.strftime("%Y-%m-%d %H:%M UTC")
        super().__init__(
            f"ASTRIA_IDEMPOTENCY={_stated(stated)}, but Astria's idempotency is "
            f"{_word(found.on)} for this account (probed {when}): set "
            f"ASTRIA_IDEMPOTENCY=auto or ASTRIA_IDEMPOTENCY={_stated(found.on)}, or turn it "
            f"{_word(stated)} in Astria's API settings (https://www.astria.ai/users/edit#api)"
        )


def contradiction(
    stated: Stated, found: IdempotencyProbe | None
) -> IdempotencyContradiction | None:
    """The refusal when a stated true or false disagrees with what was found."""
    if isinstance(stated, bool) and found is not None and found.on != stated:
        return IdempotencyContradiction(stated, found)
    return None


def effective_idempotency(stated: Stated, found: IdempotencyProbe | None) -> bool:
    """The value the client uses: the stated one, or with `auto` what was found (off
    when nothing was: looking a lost create up before re-posting is safe either way)."""
    if isinstance(stated, bool):
        return stated
    return found.on if found is not None else False


@dataclass(frozen=True)
class Settled:
    effective: bool
    found: IdempotencyProbe | None  # the evidence used (fresh or stored)
    probe: ProbeResult | None  # the probe run this time, if one was


async def settle_idempotency(
    stated: Stated, meta: Meta, client: AstriaClient, *, now: datetime
) -> Settled:
    """Probe when the stored result is missing, older than a day, or contradicts the
    stated value (the account may have changed since); raise IdempotencyContradiction
    when the evidence contradicts a stated true or false."""
    found = await meta.idempotency_probe()
    stale = found is None or now - found.at >= PROBE_MAX_AGE
    probe: ProbeResult | None = None
    if stale or contradiction(stated, found) is not None:
        probe = await probe_idempotency(client)
        log.info("Astria idempotency probe: %s", probe.describe())
        if probe.on is not None:
            found = IdempotencyProbe(probe.on, now)
            await meta.record_idempotency_probe(probe.on, now)
        elif found is not None:
            log.warning("keeping the idempotency found at %s", found.at.isoformat())
    problem = contradiction(stated, found)
    if problem is not None:
        raise problem
    effective = effective_idempotency(stated, found)
    log.info(
        "idempotency %s (ASTRIA_IDEMPOTENCY=%s, found %s)",
        _word(effective),
        _stated(stated),
        "nothing" if found is None else _word(found.on),
    )
    return Settled(effective, found, probe)
