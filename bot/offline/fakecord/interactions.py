"""What the driver gets back from an interaction: the bot's answer, followups and timings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.offline.fakecord.state import EPHEMERAL, Message

# Interaction types.
COMMAND = 2
COMPONENT = 3
AUTOCOMPLETE = 4
MODAL_SUBMIT = 5

# Callback types.
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

ALLOWED_CALLBACKS: dict[int, frozenset[int]] = {
    COMMAND: frozenset({CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL}),
    COMPONENT: frozenset(
        {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL}
    ),
    AUTOCOMPLETE: frozenset({AUTOCOMPLETE_RESULT}),
    MODAL_SUBMIT: frozenset(
        {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE}
    ),
}


class Signal:
    """Wake every waiter when something changed; each waiter re-checks its own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)


@dataclass
class ModalSpec:
    """A modal the bot opened (callback type 9)."""

    custom_id: str
    title: str
    components: list[dict[str, Any]]


@dataclass
class Reply:
    """The bot's first callback to an interaction."""

    type: int
    data: dict[str, Any]
    latency: float
    message: Message | None = None

    @property
    def content(self) -> str | None:
        value = self.data.get("content")
        return None if value is None else str(value)

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return list(self.data.get("embeds") or [])

    @property
    def components(self) -> list[dict[str, Any]]:
        return list(self.data.get("components") or [])

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def modal(self) -> ModalSpec | None:
        if self.type != MODAL:
            return None
        return ModalSpec(
            str(self.data.get("custom_id", "")),
            str(self.data.get("title", "")),
            list(self.data.get("components") or []),
        )

    @property
    def choices(self) -> list[dict[str, Any]]:
        return list(self.data.get("choices") or [])


@dataclass(eq=False)
class InteractionHandle:
    """One INTERACTION_CREATE the driver sent, and everything the bot did with it."""

    id: int
    token: str
    type: int
    channel_id: int
    user_id: int
    payload: dict[str, Any]
    source_message_id: int | None = None  # the clicked message (components, modal from one)
    dispatched_at: float = 0.0
    reply: Reply | None = None
    original: Message | None = None
    thinking: bool = False  # a type 5 defer whose loading message is not completed yet
    followups: list[Message] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[int] = field(default_factory=list)  # Discord error codes the bot got
    _signal: Signal = field(default_factory=Signal, repr=False)

    @property
    def latency(self) -> float | None:
        """Seconds from dispatch to the first accepted callback."""
        return None if self.reply is None else self.reply.latency

    @property
    def modal(self) -> ModalSpec | None:
        return None if self.reply is None else self.reply.modal

    def changed(self) -> None:
        self._signal.notify()

    async def response(self, timeout: float = 5.0) -> Reply:  # noqa: ASYNC109
        """Wait for the bot's first (accepted) callback."""
        await self._signal.wait_for(lambda: self.reply is not None, timeout, "a callback")
        assert self.reply is not None
        return self.reply

    async def wait_followups(self, count: int = 1, timeout: float = 5.0) -> list[Message]:  # noqa: ASYNC109
        """Wait until the bot has sent `count` followups; returns all of them."""
        await self._signal.wait_for(
            lambda: len(self.followups) >= count, timeout, f"{count} followup(s)"
        )
        return list(self.followups)

    async def wait_rejection(self, timeout: float = 5.0) -> int:  # noqa: ASYNC109
        """Wait until one of the bot's calls for this interaction was refused; its code."""
        await self._signal.wait_for(lambda: bool(self.rejections), timeout, "a rejected call")
        return self.rejections[0]

    async def wait_done(self, timeout: float = 5.0) -> Message | None:  # noqa: ASYNC109
        """Wait until a deferred reply is completed; the original message."""
        await self.response(timeout)
        await self._signal.wait_for(lambda: not self.thinking, timeout, "the deferral to end")
        return self.original
