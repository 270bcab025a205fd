"""`astria-bot demo`: the bot's Astria side end to end, offline.

It starts the local Astria emulator on a paid branch (so money moves), trains one tune from
generated photos, runs one prompt with it, saves the images, and checks what the client saw
against what the emulator charged. Until the Discord fake lands (the demo issue), this is
the main job without the Discord front.
"""

from __future__ import annotations

import asyncio
import io
import random
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

import aiohttp
from PIL import Image, ImageDraw
from pydantic import SecretStr

from bot.astria import AstriaClient, AstriaError, PromptRequest, RetryPolicy, TuneRequest
from bot.emulator import Emulator, EmulatorConfig

FLUX_BASE_TUNE_ID = 1504944
DEMO_BRANCH = "flux1"


def demo_photo(index: int, size: int = 768) -> bytes:
    """A synthetic portrait-ish JPEG (no real faces are shipped)."""
    rng = random.Random(index)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(40, 200) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    cx, cy = size // 2 + rng.randrange(-60, 60), size // 2 + rng.randrange(-40, 40)
    draw.ellipse((cx - 170, cy - 220, cx + 170, cy + 220), fill=(224, 180, 150))
    for dx in (-70, 70):
        draw.ellipse((cx + dx - 22, cy - 70, cx + dx + 22, cy - 40), fill=(40, 30, 30))
    draw.arc((cx - 80, cy + 40, cx + 80, cy + 130), 20, 160, fill=(120, 40, 40), width=8)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def _usd(mc: int) -> str:
    return f"${mc / 100_000:,.2f}"


async def run_demo(
    output: str | Path = "demo-output", out: TextIO = sys.stdout, *, speed: float = 1.0
) -> int:
    """Run the scripted session; 0 when every step produced what it should. `speed` > 1
    shortens the emulator's training and generation times (tests use it)."""
    folder = Path(output)
    say = _Narrator(out, folder)
    config = EmulatorConfig(
        train_seconds=4.0 / speed, prompt_seconds=2.0 / speed, jitter=0.2, foreign_tunes=30
    )
    emulator = Emulator(config)
    base_url = await emulator.start()
    say(f"Astria emulator on {base_url} (branch {DEMO_BRANCH}, prices as a paid account)")
    try:
        async with aiohttp.ClientSession() as session:
            client = AstriaClient(
                session,
                SecretStr(config.api_key),
                base_url=base_url,
                policy=RetryPolicy(base_delay=0.5, lookup_wait=0.5, timeout=30.0),
            )
            return await _script(client, emulator, folder, say, poll=0.5 / speed)
    except AstriaError as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        await emulator.stop()
        say.close()


async def _script(
    client: AstriaClient, emulator: Emulator, folder: Path, say: _Narrator, *, poll: float
) -> int:
    failures: list[str] = []
    start_balance = (await client.get_user()).usd_balance_mc
    say(f"Account balance: {_usd(start_balance)}")

    photos = [demo_photo(i) for i in range(6)]
    title = str(uuid.uuid4())
    say(f"Creating a tune from {len(photos)} photos (title {title})")
    tune = await client.create_tune(
        TuneRequest(
            title=title,
            name="man",
            images=photos,
            branch=DEMO_BRANCH,
            base_tune_id=FLUX_BASE_TUNE_ID,
            model_type="lora",
            token="ohwx",  # noqa: S106 - Astria's trigger word, not a secret
        )
    )
    say(f"  tune {tune.id} accepted; Astria expects it done at {tune.eta:%H:%M:%S}")
    started = time.monotonic()
    while not tune.is_trained:
        await asyncio.sleep(poll)
        tune = await client.get_tune(tune.id)
        say(f"  training... {time.monotonic() - started:4.1f} s", live=True)
    say(f"  tune {tune.id} trained in {time.monotonic() - started:.1f} s")

    request = PromptRequest(
        text=f"<lora:{tune.id}:1> ohwx man, studio portrait, soft light",
        num_images=4,
        seed=random.randrange(2**32),
    )
    say(f"Prompting: {request.text!r} x{request.num_images}")
    prompt = await client.create_prompt(FLUX_BASE_TUNE_ID, request)
    started = time.monotonic()
    while not (prompt.is_done or prompt.is_failed):
        await asyncio.sleep(poll)
        prompt = await client.get_prompt(prompt.id, tune_id=FLUX_BASE_TUNE_ID)
        say(f"  generating... {time.monotonic() - started:4.1f} s", live=True)
    if prompt.is_failed:
        failures.append(f"prompt failed: {prompt.user_error}")
    say(f"  prompt {prompt.id}: {len(prompt.images)} images in {time.monotonic() - started:.1f} s")
    for n, url in enumerate(prompt.images, start=1):
        data = await client.fetch_image(url, max_bytes=20 * 1024 * 1024)
        path = folder / f"prompt-{prompt.id}-{n}.png"
        path.write_bytes(data)
        say(f"  saved {path} ({len(data):,} bytes)")
    if len(prompt.images) != request.num_images:
        failures.append(f"expected {request.num_images} images, got {len(prompt.images)}")

    end_balance = (await client.get_user()).usd_balance_mc
    seen = (tune.cost_mc or 0) + (prompt.cost_mc or 0)
    charged = sum(c.cost_mc for c in emulator.charges)
    say("Money:")
    say(f"  tune cost {_usd(tune.cost_mc or 0)}, prompt cost {_usd(prompt.cost_mc or 0)}")
    say(f"  balance {_usd(start_balance)} -> {_usd(end_balance)}")
    say(f"  costs the client saw {_usd(seen)}; the emulator charged {_usd(charged)}")
    if not (seen == charged == start_balance - end_balance) or charged == 0:
        failures.append("the costs seen, the charges and the balance change disagree")
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(emulator.counters.items()))
    say(f"Requests to Astria: {counts}")
    for failure in failures:
        say(f"FAILED: {failure}")
    say("Demo finished: all steps passed." if not failures else "Demo finished with failures.")
    return 1 if failures else 0


class _Narrator:
    """Prints each step and keeps a transcript; `live` lines overwrite each other."""

    def __init__(self, out: TextIO, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._out = out
        self._file = (folder / "transcript.txt").open("w", encoding="utf-8")
        self._live = False

    def __call__(self, line: str, *, live: bool = False) -> None:
        if live:
            if self._out.isatty():
                self._out.write(f"\r{line}")
                self._out.flush()
                self._live = True
            return
        if self._live:
            self._out.write("\n")
            self._live = False
        print(line, file=self._out, flush=True)
        print(line, file=self._file)

    def close(self) -> None:
        self._file.close()
