"""Coalesced logging for a fault that repeats (Astria down, the disk full): the first line
at once, then at most one line per window saying how many were held back, so an outage of
an hour writes about sixty lines, not one per job and round."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60.0


@dataclass
class _Seen:
    since: float  # when the last line for this fault was written
    held: int = 0  # occurrences since then that wrote nothing
    args: tuple[object, ...] = ()  # the latest held one's arguments


class Coalesced:
    """Logs through `logger`, one line per window for each distinct message format."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        window: float = WINDOW_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._window = window
        self._monotonic = monotonic
        self._seen: dict[tuple[int, str], _Seen] = {}

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> None:
        """Log now if this message (its format, not its arguments) was not logged in the
        window, with the count held back since; otherwise only count it."""
        now = self._monotonic()
        key = (level, msg)
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self._window:
            seen.held += 1
            seen.args = args
            return
        if seen is not None and seen.held:
            self._emit(key, seen, now, args, exc_info=exc_info)
        else:
            self._logger.log(level, msg, *args, exc_info=exc_info)
        self._seen[key] = _Seen(now)

    def warning(self, msg: str, *args: object) -> None:
        self.log(logging.WARNING, msg, *args)

    def flush(self) -> None:
        """Write the count of every fault held back for a whole window: it may have
        stopped, and nothing else would say how often it happened."""
        now = self._monotonic()
        for key, seen in list(self._seen.items()):
            if now - seen.since < self._window:
                continue
            if seen.held:
                self._emit(key, seen, now, seen.args)
            del self._seen[key]

    def _emit(
        self,
        key: tuple[int, str],
        seen: _Seen,
        now: float,
        args: tuple[object, ...],
        *,
        exc_info: bool = False,
    ) -> None:
        level, msg = key
        self._logger.log(
            level,
            msg + " (%d more like it in the last %d s)",
            *args,
            seen.held,
            round(now - seen.since),
            exc_info=exc_info,
        )
