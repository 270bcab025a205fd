"""Scripted and random failures (5xx, 429, dropped connections, latency) for chosen routes."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, NamedTuple

FaultKind = Literal[
    "http_500",
    "http_500_after",
    "http_504",
    "http_504_after",
    "http_502",
    "http_429",
    "drop",
    "drop_after",
    "latency",
    "latency_after",
]


@dataclass
class Fault:
    """One failure to inject; `*_after` kinds let the request take effect first."""

    kind: FaultKind
    retry_after: float = 1.0
    delay: float = 0.0

    @property
    def after(self) -> bool:
        """True when the request is processed (object created, charged) before failing."""
        return self.kind.endswith("_after")

    @property
    def status(self) -> int | None:
        """The HTTP status this fault answers with, or None when no response is sent."""
        if self.kind.startswith("http_"):
            return int(self.kind.split("_")[1])
        return None


class RequestRecord(NamedTuple):
    """One request as the emulator saw it."""

    method: str
    path: str
    route: str
    status: int | None
    fault: FaultKind | None


@dataclass
class _Rate:
    fault: Fault
    probability: float
    route: str | None


class FaultInjector:
    """Decides which fault, if any, the next request on a route gets."""

    def __init__(self, seed: int = 0) -> None:
        self._scripted: list[tuple[str | None, Fault]] = []
        self._rates: list[_Rate] = []
        # Its own RNG, so turning faults on does not shift the jitter of jobs.
        self._rng = random.Random(f"faults:{seed}")

    def script(self, route: str | None, *faults: Fault) -> None:
        """The next len(faults) requests matching route (None = any API route) get these."""
        self._scripted.extend((route, fault) for fault in faults)

    def rate(self, fault: Fault, probability: float, route: str | None = None) -> None:
        """Give requests matching route this fault with the given probability."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        self._rates.append(_Rate(fault, probability, route))

    def clear(self) -> None:
        self._scripted.clear()
        self._rates.clear()

    @property
    def pending(self) -> int:
        """How many scripted faults have not been used yet."""
        return len(self._scripted)

    def pick(self, route: str, *, api: bool) -> Fault | None:
        """The fault for this request, consuming a scripted one if it matches.

        A fault scripted for "any route" (None) applies only to API routes: generated
        image files live on a separate store in the real service.
        """
        for index, (wanted, fault) in enumerate(self._scripted):
            if wanted == route or (wanted is None and api):
                del self._scripted[index]
                return fault
        for rule in self._rates:
            if (rule.route == route or (rule.route is None and api)) and (
                self._rng.random() < rule.probability
            ):
                return rule.fault
        return None
