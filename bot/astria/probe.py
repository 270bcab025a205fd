"""Is idempotency on for this Astria account? Astria does not say, but it can be seen.

Two creates of a tune with the same fresh title on the free `fast` branch (Astria's docs:
"Creating a tune with branch=fast is free") answer with one tune when the account's
idempotency is on and with two when it is off. Every probe tune is deleted afterwards; any
that could not be removed is reported by id. The probe spends nothing and writes nothing
of the bot's: the caller decides what to keep of the answer.
"""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass, field

import aiohttp
from PIL import Image
from pydantic import SecretStr

from bot.astria.client import MAX_PAGE, AstriaClient, RetryPolicy
from bot.astria.errors import AstriaError
from bot.astria.models import TuneRequest

log = logging.getLogger(__name__)

PROBE_TITLE = "astria-bot idempotency probe"
PROBE_BRANCH = "fast"  # free, and the only branch the probe may use
PROBE_PHOTOS = 4
PROBE_PHOTO_SIZE = 512  # Astria's FAQ asks for at least 512x512
# Short waits: the probe runs at start and in `check`, and may give up (the caller then
# keeps what it knew); a create whose answer was lost is still looked up by title.
PROBE_POLICY = RetryPolicy(
    base_delay=1.0, max_delay=5.0, max_attempts=3, lookup_wait=2.0, timeout=20.0
)


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw. `on` is None when it could not tell (`error` says why)."""

    on: bool | None
    title: str
    tune_ids: tuple[int, ...] = ()
    left_behind: tuple[int, ...] = ()  # probe tunes that could not be deleted
    error: str | None = None
    listed: bool = True  # False: the tunes of this title could not be listed afterwards

    @property
    def word(self) -> str:
        return {True: "on", False: "off", None: "unknown"}[self.on]

    def describe(self) -> str:
        """One line for `check` and the log."""
        if self.on is None:
            text = f"could not be probed ({self.error})"
        elif self.on:
            text = "on (two creates with one title gave one tune)"
        else:
            text = "off (two creates with one title gave two tunes)"
        if self.left_behind:
            ids = ", ".join(str(i) for i in self.left_behind)
            text += f"; probe tunes not deleted, remove them by hand: {ids}"
        if not self.listed and self.on is None:
            text += f"; tunes titled {self.title!r} may remain at Astria: delete them by hand"
        return text


def probe_client(session: aiohttp.ClientSession, api_key: SecretStr, base_url: str) -> AstriaClient:
    """A client for the probe: idempotency off (a lost create is looked up by title, never
    re-posted blindly), short waits."""
    return AstriaClient(session, api_key, base_url=base_url, policy=PROBE_POLICY)


def probe_photos() -> list[bytes]:
    """Small valid JPEGs (512x512, a few KB each), drawn in memory."""
    photos = []
    for index in range(PROBE_PHOTOS):
        image = Image.new("RGB", (PROBE_PHOTO_SIZE, PROBE_PHOTO_SIZE), (40 * index, 120, 200))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=80)
        photos.append(out.getvalue())
    return photos


@dataclass
class _Made:
    ids: list[int] = field(default_factory=list)

    def add(self, tune_id: int) -> None:
        if tune_id not in self.ids:
            self.ids.append(tune_id)


async def probe_idempotency(client: AstriaClient, *, title: str | None = None) -> ProbeResult:
    """Create the same fast tune twice, compare the ids, delete what was made.
    Never raises an AstriaError: a probe that cannot tell says so in its result."""
    title = title or f"{PROBE_TITLE} {uuid.uuid4()}"
    request = TuneRequest(title=title, name="man", images=probe_photos(), branch=PROBE_BRANCH)
    made = _Made()
    on: bool | None = None
    error: str | None = None
    try:
        first = await client.create_tune(request)
        made.add(first.id)
        second = await client.create_tune(request, exclude_ids=made.ids)
        made.add(second.id)
        on = first.id == second.id
    except AstriaError as exc:
        error = exc.message
        log.warning("the idempotency probe could not finish: %s", exc.message)
    left, listed = await _clean_up(client, title, made)
    return ProbeResult(on, title, tuple(made.ids), tuple(left), error, listed)


async def _clean_up(client: AstriaClient, title: str, made: _Made) -> tuple[list[int], bool]:
    """Delete every probe tune: those we were answered with and any other of this title
    (a create whose answer was lost). The ids that could not be deleted, and whether the
    title's tunes could be listed."""
    listed = True
    try:
        found = await client.list_tunes(title=title, limit=MAX_PAGE)
    except AstriaError as exc:
        listed = False
        log.warning("probe tunes could not be listed (%s); deleting the known ones", exc.message)
    else:
        made.ids.extend(t.id for t in found if t.title == title and t.id not in made.ids)
    left: list[int] = []
    for tune_id in made.ids:
        try:
            await client.delete_tune(tune_id)  # False: already gone, which is as good
        except AstriaError as exc:
            log.warning("probe tune %d could not be deleted: %s", tune_id, exc.message)
            left.append(tune_id)
    return left, listed
