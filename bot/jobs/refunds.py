"""Whether Astria gives a failed prompt's cost back, as the balance shows it.

Astria does not document it, so the operator states it (`ASTRIA_REFUNDS_FAILED_PROMPTS`)
and the ledger books what Astria kept as the operator's cost (docs/architecture.md §3).
This watch checks the statement against the balance: over the readings since a baseline,
the balance's fall minus what the bot's creates cost is `-F` when the `F` mc of failed
prompts came back, and 0 when Astria kept them. Anything else (a top-up, spend by another
client on the key, an extension fee) proves nothing and starts a new baseline. A refund
Astria made before the bot saw the failure looks like a fall short by more than `F`: the
watch waits one reading for the failure to be seen before it gives up on the baseline.

Pure: no I/O. The tracker feeds it and says what it found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Finding = Literal["refunded", "kept"]


@dataclass
class RefundWatch:
    _balance: int | None = None  # at the baseline
    _charged: int = 0  # what creates said they cost since the baseline
    _failed: int = 0  # what the failed prompts seen since the baseline had cost
    _waited: bool = False  # the last reading fell short by more than `_failed`

    def charged(self, cost_mc: int) -> None:
        self._charged += cost_mc

    def failed(self, cost_mc: int) -> None:
        self._failed += cost_mc
        self._waited = False

    def reading(self, balance_mc: int, *, exact: bool) -> Finding | None:
        """A balance reading; `exact` when no create was in flight across it (then every
        charge Astria made is one the bot noted). What the balance proves, if anything."""
        if self._balance is None:
            self._restart(balance_mc)
            return None
        if not exact:
            return None
        drift = (self._balance - balance_mc) - self._charged
        if self._failed == 0:
            if drift < 0 and not self._waited:
                self._waited = True  # perhaps a refund of a failure not seen yet
                return None
            self._restart(balance_mc)
            return None
        found: Finding | None = None
        if drift == -self._failed:
            found = "refunded"
        elif drift == 0:
            found = "kept"
        elif drift < -self._failed and not self._waited:
            self._waited = True
            return None
        self._restart(balance_mc)
        return found

    def _restart(self, balance_mc: int) -> None:
        self._balance = balance_mc
        self._charged = 0
        self._failed = 0
        self._waited = False
