"""Use cases on Astria's gallery packs: list them with the price for the member's tune
class, and run one on the member's own ready tune (one reservation for the pack's price;
the tracker posts it once and follows every prompt it made, bot/jobs/tracker.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from bot.actions.context import Actor, Done, Outcome, Place, Refused, Services, acting
from bot.actions.door import admit, admit_images, parse_id
from bot.actions.prompts import _tune_id, _unusable, queue_created
from bot.astria import AstriaError, Pack
from bot.rules.credits import format_mc
from bot.rules.prompts import display_text
from bot.store import PromptRecord, TuneRecord, TuneState

PAGE_SIZE: Final = 5
CACHE_SECONDS: Final = 300.0  # the gallery changes rarely; a page flip asks Astria nothing
GALLERY_DOWN: Final = "Astria's pack gallery cannot be read right now; try again in a minute."
NO_SUCH_PACK: Final = "That pack is not in Astria's gallery; pick one from the list."
NOT_OWN: Final = "Run packs on one of your own tunes."


class PackCache:
    """The gallery as last read, for `ttl` seconds (the client itself keeps nothing)."""

    def __init__(self, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._packs: list[Pack] | None = None
        self._source: object = None  # the client it was read with
        self._read_at = 0.0
        self.reads = 0  # how often Astria was asked (tests)

    def clear(self) -> None:
        self._packs = None
        self._source = None
        self.reads = 0

    async def packs(self, svc: Services) -> list[Pack]:
        now = self._clock()
        stale = self._packs is None or now - self._read_at >= self.ttl
        if stale or self._source is not svc.astria:  # another account: read its own
            self.reads += 1
            self._packs = await svc.astria.list_packs()
            self._source = svc.astria
            self._read_at = now
        assert self._packs is not None
        return self._packs


CACHE = PackCache()


@dataclass(frozen=True)
class PackOffer:
    """One pack as a member sees it: its price for their class (None: not for it)."""

    id: int
    title: str
    price_mc: int | None
    images: int | None
    classes: tuple[str, ...]


@dataclass(frozen=True)
class PackPage:
    offers: tuple[PackOffer, ...]
    page: int  # 0-based
    pages: int
    subject_class: str | None  # the class priced, None: no ready tune

    def text(self) -> str:
        lines = [
            "**Astria packs**"
            + (f" (prices for a {self.subject_class})" if self.subject_class else "")
        ]
        for offer in self.offers:
            if offer.price_mc is None:
                price = f"for {', '.join(offer.classes)}"
            else:
                images = f", {offer.images} images" if offer.images else ""
                price = f"{format_mc(offer.price_mc)}{images}"
            lines.append(f"`{offer.id}` **{display_text(offer.title, 60)}**: {price}")
        if not self.offers:
            lines.append("The gallery has no packs right now.")
        lines.append(f"Page {self.page + 1} of {self.pages}. Run one with `/pack run`.")
        return "\n".join(lines)


async def _gallery(svc: Services) -> list[Pack] | Refused:
    try:
        return await CACHE.packs(svc)
    except AstriaError:
        return Refused(GALLERY_DOWN)


async def _newest_own_ready(svc: Services, actor: Actor, guild_id: int) -> TuneRecord | None:
    usable = await svc.store.tunes.list_usable(actor.user_id, guild_id, states=[TuneState.READY])
    own = [t for t in usable if t.owner_id == actor.user_id]
    return max(own, key=lambda t: t.id, default=None)


def _offer(pack: Pack, tune: TuneRecord | None) -> PackOffer:
    price = None
    images = None
    if tune is not None and tune.subject_class in pack.costs:
        price = 0 if tune.branch == "fast" else pack.costs[tune.subject_class]
        images = pack.images.get(tune.subject_class)
    return PackOffer(pack.id, pack.title, price, images, tuple(sorted(pack.costs)))


@acting
async def list_packs(svc: Services, actor: Actor, place: Place, page: int = 0) -> Outcome[PackPage]:
    """A page of the gallery, priced for the class of the member's newest ready tune
    (on the free branch, free), the packs made for that class first."""
    refused = await admit(svc, actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    packs = await _gallery(svc)
    if isinstance(packs, Refused):
        return packs
    tune = await _newest_own_ready(svc, actor, place.guild_id)
    offers = sorted((_offer(p, tune) for p in packs), key=lambda o: (o.price_mc is None, o.id))
    pages = max(1, -(-len(offers) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    shown = tuple(offers[page * PAGE_SIZE : (page + 1) * PAGE_SIZE])
    result = PackPage(shown, page, pages, tune.subject_class if tune else None)
    return Done(result.text(), result)


async def pack_choices(svc: Services, actor: Actor, place: Place, current: str) -> list[PackOffer]:
    """Autocomplete: the packs whose title has `current`, for the member's class first."""
    if not place.guild_id:
        return []
    packs = await _gallery(svc)
    if isinstance(packs, Refused):
        return []
    tune = await _newest_own_ready(svc, actor, place.guild_id)
    wanted = current.casefold().strip()
    offers = [_offer(p, tune) for p in packs if wanted in p.title.casefold()]
    return sorted(offers, key=lambda o: (o.price_mc is None, o.title))[:25]


@acting
async def run_pack(
    svc: Services, actor: Actor, place: Place, pack: str, tune: str
) -> Outcome[PromptRecord]:
    """Every rule of `/imagine` (the server's rules, NSFW refuse mode, a ready tune of the
    member's own, the budgets), then one reservation for the pack's price for the
    tune's class (nothing on the free branch)."""
    refused = await admit_images(svc, actor, place)
    if refused is not None:
        return refused
    assert place.guild_id is not None
    guild_id = place.guild_id
    pack_id = parse_id(pack, "a pack")
    if isinstance(pack_id, Refused):
        return pack_id
    picked = await _tune_id(svc, actor, guild_id, tune)
    if isinstance(picked, Refused):
        return picked
    record = await svc.store.tunes.get_usable(actor.user_id, guild_id, picked)
    if record is None:
        return Refused("That tune is not yours and not shared with this server.")
    if record.owner_id != actor.user_id:
        return Refused(NOT_OWN)
    unusable = _unusable(record)
    if unusable is not None:
        return unusable
    assert record.astria_id is not None
    packs = await _gallery(svc)
    if isinstance(packs, Refused):
        return packs
    chosen = next((p for p in packs if p.id == pack_id), None)
    if chosen is None:
        return Refused(NO_SUCH_PACK)
    title = display_text(chosen.title, 60)
    if record.subject_class not in chosen.costs:
        classes = ", ".join(sorted(chosen.costs)) or "no class"
        return Refused(
            f"**{title}** is not made for a {record.subject_class}: it is for {classes}."
        )
    price = 0 if record.branch == "fast" else chosen.costs[record.subject_class]
    images = chosen.images.get(record.subject_class, 0)
    astria_tune = record.astria_id
    created = await queue_created(
        svc,
        place,
        record,
        "Not queued. ",
        lambda: svc.store.packs.create_run(
            owner_id=actor.user_id,
            guild_id=guild_id,
            channel_id=place.channel_id or 0,
            tune_id=record.id,
            astria_tune_id=astria_tune,
            pack_id=chosen.id,
            pack_title=chosen.title,
            num_images=images,
            price_mc=price,
            max_waiting=svc.settings.max_waiting_per_member,
        ),
    )
    if isinstance(created, Refused):
        return created
    count = f"{images} images, " if images else ""
    return Done(
        f"📦 Queued the pack **{title}** with **{display_text(record.name, 32)}** "
        f"({count}{format_mc(price)}). Each of its prompts is posted in this channel as "
        "it finishes.",
        created,
    )
