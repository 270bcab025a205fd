"""Message text, image fitting and nonces: pure functions, tested directly."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from bot.jobs.delivery import EventKind, JobEvent, Progress
from bot.ui.files import MIB, ImageTooLarge, Limits, batches, fit
from bot.ui.nonce import MAX_NONCE, marker, nonce_for
from bot.ui.text import job_label, progress_line, result_text


def event(kind: EventKind, **kw: object) -> JobEvent:
    values: dict[str, object] = {
        "key": f"prompt:7:{kind}",
        "job": "prompt:7",
        "kind": kind,
        "owner_id": 42,
        "guild_id": 1,
        "channel_id": 2,
    }
    values.update(kw)
    return JobEvent(**values)  # type: ignore[arg-type]


def test_status_lines_count_down_with_a_discord_timestamp():
    eta = datetime(2030, 1, 1, tzinfo=UTC)
    line = progress_line(Progress("tune:1", "training", 42, 1, 2, eta=eta))
    assert f"<t:{int(eta.timestamp())}:R>" in line
    queued = progress_line(Progress("prompt:1", "queued", 42, 1, 2, queue_position=3))
    assert "position 3" in queued


@pytest.mark.parametrize("kind", list(EventKind))
def test_every_event_has_a_clear_line_that_mentions_the_owner(kind: EventKind):
    text = result_text(event(kind, message="Astria refused it: images too small"))
    assert "<@42>" in text and len(text) <= 2000


def test_money_is_explained_on_failure():
    assert "given back" in result_text(event(EventKind.FAILED))
    assert "charged $0.02" in result_text(event(EventKind.FAILED, cost_mc=2_000))
    assert "reserved" in result_text(event(EventKind.STUCK))


def noisy_png(side: int) -> bytes:
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_a_large_image_is_reencoded_to_fit_and_a_small_one_kept():
    big = noisy_png(900)  # random noise compresses badly: about 2.4 MB as PNG
    assert len(big) > 1 * MIB
    fitted, ext = fit(big, 1 * MIB)
    assert len(fitted) <= 1 * MIB and ext == "jpg"
    assert Image.open(io.BytesIO(fitted)).size[0] > 100
    small = noisy_png(32)
    assert fit(small, 1 * MIB) == (small, "png")
    with pytest.raises(ImageTooLarge):
        fit(big, 200)


def test_batches_respect_files_per_message_and_request_size():
    limits = Limits(per_file=8 * MIB, per_request=25 * MIB)
    groups = batches([8 * MIB] * 8, limits)
    assert all(sum(8 * MIB for _ in g) <= 25 * MIB for g in groups)
    assert [len(g) for g in groups] == [3, 3, 2]  # 24 MiB and framing fit in 25 MiB
    assert batches([100] * 23, limits) == [list(range(10)), list(range(10, 20)), [20, 21, 22]]


@given(st.lists(st.integers(min_value=1, max_value=10 * MIB), max_size=30))
def test_batches_keep_every_file_once_in_order(sizes: list[int]):
    groups = batches(sizes, Limits(per_file=10 * MIB))
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    assert all(0 < len(g) <= 10 for g in groups)


def test_nonces_are_deterministic_short_and_distinct():
    a = nonce_for("prompt:1:done")
    assert a == nonce_for("prompt:1:done") and len(a) <= MAX_NONCE
    assert a != nonce_for("prompt:1:done", part=1) != nonce_for("prompt:2:done")
    assert marker("reroll", 12) == "job:reroll:12"


def test_bytes_that_are_no_image_cannot_fit_and_say_so():
    from bot.ui.files import CannotFit

    with pytest.raises(CannotFit):
        fit(b"\x89PNG" + b"\x00" * 5000, 1000)  # too large, and nothing Pillow can shrink


def http_error(status: int, code: int, text: str) -> Exception:
    import discord

    class Response:  # what discord.HTTPException reads of aiohttp's response
        def __init__(self) -> None:
            self.status = status
            self.reason = text

    cls = {403: discord.Forbidden, 404: discord.NotFound}.get(status, discord.HTTPException)
    if status >= 500:
        cls = discord.DiscordServerError
    return cls(Response(), {"code": code, "message": text})


@pytest.mark.parametrize(
    ("status", "code", "permanent", "certain"),
    [
        (403, 50013, True, False),  # Missing Permissions: an admin may be fixing it
        (403, 50001, True, False),  # Missing Access
        (404, 10003, True, True),  # Unknown Channel: gone
        (400, 50035, True, True),  # Invalid Form Body: the same post is refused again
        (413, 40005, True, True),  # Request entity too large
        (503, 0, False, False),
        (429, 0, False, False),
    ],
)
def test_discord_refusals_are_told_apart(status: int, code: int, permanent: bool, certain: bool):
    from bot.ui.delivery import _failure

    failure = _failure(http_error(status, code, "refused"))
    assert (failure.permanent, failure.certain) == (permanent, certain)
    assert str(status) in failure.reason


@pytest.mark.parametrize("exc", [TimeoutError(), OSError("reset"), ConnectionResetError()])
def test_a_lost_connection_or_a_timeout_is_transient(exc: Exception):
    import aiohttp

    from bot.ui.delivery import _failure

    assert not _failure(exc).permanent
    assert not _failure(aiohttp.ClientConnectionError("gone")).permanent


async def test_fitting_in_a_worker_thread_leaves_the_event_loop_free():
    import asyncio
    import itertools
    import time

    big = noisy_png(2400)  # about 17 MB of PNG: decoded, then re-encoded as JPEG
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.002)

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    fitted, _ = await asyncio.to_thread(fit, big, 4 * MIB)
    end = time.perf_counter()
    beat.cancel()
    edges = [start, *(t for t in ticks if start < t < end), end]
    stall = max(b - a for a, b in itertools.pairwise(edges))
    assert len(fitted) <= 4 * MIB
    # Pillow lets go of the GIL while it works, so the loop is never held for long.
    # (JPEG's optimize=True would hold it through a whole encode: a third of the fit here.)
    assert stall < (end - start) / 3, f"loop stalled {stall:.3f}s of a {end - start:.3f}s fit"


def test_a_status_names_the_member_and_the_prompt_escaped_on_one_line():
    label = job_label("a *bold* castle @everyone\nsecond line " + "x" * 200)
    eta = datetime(2030, 1, 1, tzinfo=UTC)
    line = progress_line(Progress("prompt:1", "generating", 42, 1, 2, eta=eta), label=label)
    assert "<@42>" in line and "\\*bold\\*" in line and "@everyone" not in line
    assert "\n" not in line and "second line" in line and "…" in line and len(label) <= 100
    tune = progress_line(Progress("tune:1", "queued", 42, 1, 2, queue_position=2), label="me")
    assert tune.startswith("⏳ Tune for <@42>: “me”.") and "position 2" in tune


def test_a_status_counts_down_until_the_eta_and_then_says_any_moment_now():
    eta = datetime(2030, 1, 1, tzinfo=UTC)
    update = Progress("prompt:1", "generating", 42, 1, 2, eta=eta)
    before = progress_line(update, label="x", now=eta - timedelta(seconds=30))
    after = progress_line(update, label="x", now=eta + timedelta(seconds=1))
    assert f"expected <t:{int(eta.timestamp())}:R>" in before
    assert "any moment now" in after and "<t:" not in after


def test_a_result_says_which_prompt_it_answers():
    text = result_text(event(EventKind.DONE), label="a lighthouse")
    assert "<@42>" in text and "“a lighthouse”" in text
    ready = result_text(event(EventKind.READY, job="tune:1", key="tune:1:ready"), label="me")
    assert "your tune “me” is ready" in ready
