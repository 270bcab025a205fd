"""`astria-bot demo` (`make demo`): the bot's main job, offline, as a member would see it.

It starts the Astria emulator on a paid branch (so money moves) and the Discord fake on
loopback, runs the real bot as its own process against them, and plays a scripted session
of two members and an admin with photos it draws itself (no real faces are shipped): a
refused photo, a tune from six photos and its progress, `/imagine`, Reroll, Upscale (posted
as a reply), a subtle and a strong Vary on its images and Edit prompt, `/balance`, an
over-budget refusal, `/admin budget`, then `/imagine` again, `/pack list` and `/pack run`
(each of the pack's prompts posted, its images saved). It prints a transcript, writes
it and the images to the output folder, ends with the ledger against the emulator's
charges, and exits non-zero if any step did not produce what it should.
"""

from __future__ import annotations

import io
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

from PIL import Image, ImageDraw

from bot.offline.fakecord import FakeDiscordConfig
from bot.offline.fakecord.state import Message
from bot.offline.stage import Stage, StageError, StageOptions, answer_of
from bot.rules.credits import format_mc
from bot.store.ledger import LedgerKind

REPLY = 19  # Discord's message type for a reply


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


def _thumbnail() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (200, 150), (90, 90, 90)).save(out, "JPEG")
    return out.getvalue()


async def run_demo(
    output: str | Path = "demo-output", out: TextIO = sys.stdout, *, speed: float = 1.0
) -> int:
    """Run the scripted session; 0 when every step produced what it should. `speed` > 1
    shortens the emulator's training and generation times (tests use it)."""
    folder = Path(output)
    say = _Narrator(out, folder)
    work = folder / "run"  # the bot's database, photos folder and log
    shutil.rmtree(work, ignore_errors=True)
    options = StageOptions(
        folder=work,
        train_seconds=4.0 / speed,
        prompt_seconds=2.0 / speed,
        foreign_tunes=30,
        fake=FakeDiscordConfig(),
    )
    stage = Stage(options)
    failures: list[str] = []
    try:
        async with stage:
            say(f"Astria emulator on {stage.emulator.base_url} (paid branch {options.branch})")
            say(f"Discord fake on {stage.fake.base_url}; starting the bot as its own process")
            started = time.monotonic()
            await stage.start_bot()
            say(f"  the bot connected in {time.monotonic() - started:.1f} s")
            await stage.fake.wait_commands(30.0)
            await _script(stage, folder, say, failures)
            code = await stage.stop_bot()
            if code != 0:
                failures.append(f"the bot exited with {code} on SIGTERM")
            await _money(stage, say, failures)
    except StageError as exc:
        failures.append(str(exc))
    finally:
        for line in failures:
            say(f"FAILED: {line}")
        say("Demo finished: all steps passed." if not failures else "Demo finished with failures.")
        say(f"Transcript and images: {folder}/   (the bot's log and database: {work}/)")
        say.close()
    return 1 if failures else 0


def _expect(failures: list[str], ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)


async def _script(stage: Stage, folder: Path, say: _Narrator, failures: list[str]) -> None:
    alice, bob, admin = stage.members["alice"], stage.members["bob"], stage.admin

    say("\n> alice: /tune create  (6 photos and a thumbnail)")
    photos = [(f"IMG_{i}.jpg", demo_photo(i)) for i in range(1, 7)]
    answer = await stage.train(alice, "me", [*photos, ("thumb.jpg", _thumbnail())])
    say(_indent(answer))
    _expect(failures, "Training **me**" in answer, "the tune was not queued")
    _expect(failures, "too small" in answer, "the thumbnail was not refused with its reason")

    say("\n  progress in #art:")
    seen: set[str] = set()

    def ready() -> bool:
        for message in stage.posts():
            line = message.content.splitlines()[0] if message.content else ""
            if line and line not in seen:
                seen.add(line)
                say(f"  | {_render(stage, line)}")
        return any("is ready" in m.content for m in stage.posts())

    await stage.wait_for(ready, "the tune to be ready", timeout=120.0)
    tune_id = await stage.tune_choice(alice, "me")

    say("\n> alice: /imagine prompt:'studio portrait, soft light' tune:me count:4")
    answer = await stage.command(
        alice, "imagine", prompt="studio portrait, soft light", tune=tune_id, count=4
    )
    say(_indent(answer))
    _expect(failures, "Queued 4 images" in answer, "/imagine was not queued")
    say("  its status in #art, then its result in the same place:")

    def images() -> list[Message]:
        for message in stage.posts():
            line = message.content.splitlines()[0] if message.content else ""
            if line and line not in seen and not message.attachments:
                seen.add(line)
                say(f"  | {_render(stage, line)}")
        return stage.image_posts()

    first = await stage.wait_for(images, "the images to be posted", timeout=120.0, every=0.02)
    post = first[0]
    _describe_post(stage, post, say)
    _save(post, folder, "imagine", say)
    _expect(failures, len(post.attachments) == 4, "four images were not posted")

    reroll = _custom_id(post, "job:reroll:")
    say("\n> alice clicks Reroll")
    answer = await stage.click(alice, post, reroll)
    say(_indent(answer))
    second = await stage.wait_for(
        lambda: stage.image_posts()[1:], "the reroll to be posted", timeout=120.0
    )
    _describe_post(stage, second[0], say)
    _save(second[0], folder, "reroll", say)

    say("\n> alice clicks Upscale 2 under her first images")
    answer = await stage.click(alice, post, _custom_id(post, "job:upscale:", "-1"))
    say(_indent(answer))
    _expect(failures, "Upscaling image 2" in answer, "the upscale was not queued")
    upscaled = await stage.wait_for(
        lambda: [m for m in stage.image_posts() if "upscaled" in m.content],
        "the upscale to be posted",
        timeout=120.0,
    )
    _describe_post(stage, upscaled[0], say)
    reply = upscaled[0].type == REPLY
    say("  | (posted as a reply to the images it came from)" if reply else "  | (not a reply)")
    _expect(failures, reply, "the upscale was not a reply to its source")
    _save(upscaled[0], folder, "upscale", say)
    _expect(failures, len(upscaled[0].attachments) == 1, "the upscale is not one image")

    # (button, image, how, what its post says, file stem, what a failure says)
    variations = (
        ("Subtle", 1, "subtly", "variations of image 1", "vary", "the variation"),
        ("Strong", 3, "strongly", "strong variations of image 3", "strong", "the strong one"),
    )
    for button, image, how, says, stem, which in variations:
        say(f"\n> alice clicks {button} {image} (vary image {image}, {how})")
        action = f"job:vary-{button.lower()}:"
        answer = await stage.click(alice, post, _custom_id(post, action, f"-{image - 1}"))
        say(_indent(answer))
        _expect(failures, says in answer, f"{which} was not queued")

        def posted(says: str = says) -> list[Message]:
            return [m for m in stage.image_posts() if says in m.content]

        varied = await stage.wait_for(
            posted, f"the {button.lower()} variations to be posted", timeout=120.0
        )
        _describe_post(stage, varied[0], say)
        _save(varied[0], folder, stem, say)

    say("\n> alice clicks Edit under her first images: 'studio portrait, golden hour'")
    shown = await stage.fake.click(alice, post, _custom_id(post, "job:edit:"))
    form = (await shown.response(30.0)).modal
    _expect(failures, form is not None, "Edit did not open its form")
    if form is not None:
        edited = await stage.fake.submit_modal(
            alice, stage.channel, shown, {"prompt": "studio portrait, golden hour"}
        )
        answer = await answer_of(edited, 30.0)
        say(_indent(answer))
        _expect(failures, "Queued 4 images" in answer, "the edited prompt was not queued")
        made = await stage.wait_for(
            lambda: [m for m in stage.image_posts() if "golden hour" in m.content],
            "the edited prompt's images to be posted",
            timeout=120.0,
        )
        _describe_post(stage, made[0], say)
        _save(made[0], folder, "edit", say)

    say("\n> alice: /balance")
    balance = await stage.command(alice, "balance")
    say(_indent(balance))
    _expect(failures, "You today" in balance, "/balance did not answer")

    say("\n> admin: /admin budget user daily:1.60 monthly:20")
    say(_indent(await stage.command(admin, "admin budget user", daily="1.60", monthly="20")))
    say("\n> alice: /imagine count:8  (more than today's limit leaves)")
    refused = await stage.command(alice, "imagine", prompt="on a beach", tune=tune_id, count=8)
    say(_indent(refused))
    _expect(failures, "Not queued" in refused, "the over-budget /imagine was not refused")
    say("\n> admin: /admin budget user daily:5 monthly:20")
    say(_indent(await stage.command(admin, "admin budget user", daily="5", monthly="20")))
    say("\n> alice: /imagine count:8")
    answer = await stage.command(alice, "imagine", prompt="on a beach", tune=tune_id, count=8)
    say(_indent(answer))
    _expect(failures, "Queued 8 images" in answer, "/imagine after the raise was not queued")
    third = await stage.wait_for(
        lambda: [m for m in stage.image_posts() if "on a beach" in m.content],
        "the last images to be posted",
        timeout=120.0,
    )
    _save(third[-1], folder, "beach", say)

    say("\n> alice: /pack list")
    listing = await stage.command(alice, "pack list")
    say(_indent(_render(stage, listing)))
    _expect(failures, "Fantasy Worlds**: $0.90" in listing, "/pack list did not price the packs")
    before = len(stage.image_posts())
    say("\n> alice: /pack run pack:Fantasy Worlds tune:me")
    answer = await stage.command(alice, "pack run", pack="262", tune=tune_id)
    say(_indent(answer))
    _expect(failures, "Queued the pack **Fantasy Worlds**" in answer, "the pack was not queued")
    made = await stage.wait_for(
        lambda: stage.image_posts()[before:] if len(stage.image_posts()) >= before + 3 else None,
        "the pack's three prompts to be posted",
        timeout=120.0,
    )
    for n, pack_post in enumerate(made, start=1):
        _describe_post(stage, pack_post, say)
        _save(pack_post, folder, f"pack-{n}", say)
    _expect(failures, sum(len(p.attachments) for p in made) == 6, "the pack made not 6 images")

    say("\n> admin: /admin spend chart:True")
    spend = await stage.command_reply(admin, "admin spend", chart=True)
    say(_indent("" if spend is None else _render(stage, spend.content)))
    charts = [] if spend is None else [a for a in spend.attachments if a.filename.endswith(".png")]
    _expect(failures, len(charts) == 1, "/admin spend chart:True attached no PNG chart")
    if charts:
        path = folder / "spend-chart.png"
        path.write_bytes(charts[0].data)
        say(f"  saved the spend chart ({charts[0].width}x{charts[0].height}) as {path}")

    say("\n> bob: /imagine with alice's tune (not shared)")
    theirs = await stage.command(bob, "imagine", prompt="hello", tune=tune_id)
    say(_indent(theirs))
    _expect(failures, "not yours" in theirs, "bob could use alice's tune")

    # One message per job (the tune, four prompts, the upscale, both variations, the pack
    # run's status and its three prompts): each status gave way to its result.
    jobs = 12
    try:
        # The pack's status says it is done once its last prompt is settled, which may come
        # a moment after that prompt's post.
        await stage.wait_for(
            lambda: (
                len(stage.posts()) == jobs
                and any("The pack is done" in m.content for m in stage.posts())
            ),
            "one message per job, the pack's saying it is done",
            timeout=15,
        )
    except StageError as exc:
        failures.append(str(exc))
    say("\n  #art as members see it now, one message per job:")
    for message in stage.posts():
        files = f"  [{len(message.attachments)} images]" if message.attachments else ""
        say(f"  | {_render(stage, message.content.splitlines()[0])}{files}")
    mention = f"<@{alice.id}>"
    named = [m for m in stage.posts() if mention in m.content and "“" in m.content]
    _expect(failures, len(named) == jobs, "a job's message does not name its member and prompt")


def _render(stage: Stage, text: str) -> str:
    """Mentions as a Discord client shows them: `<@id>` becomes @name."""

    def name(match: re.Match[str]) -> str:
        user = stage.fake.world.users.get(int(match.group(1)))
        return f"@{user.name}" if user is not None else match.group(0)

    return re.sub(r"<@!?(\d+)>", name, text)


def _describe_post(stage: Stage, post: Message, say: _Narrator) -> None:
    say(f"  | {_render(stage, post.content.splitlines()[0]) if post.content else ''}")
    say(f"  | {len(post.attachments)} files, buttons: {', '.join(post.labels())}")


def _custom_id(post: Message, prefix: str, suffix: str = "") -> str:
    for custom_id in post.custom_ids():
        if custom_id.startswith(prefix) and custom_id.endswith(suffix):
            return custom_id
    raise StageError(f"no {prefix}… button on the post")


def _save(post: Message, folder: Path, stem: str, say: _Narrator) -> None:
    for n, attachment in enumerate(post.attachments, start=1):
        suffix = Path(attachment.filename).suffix or ".png"
        path = folder / f"{stem}-{n}{suffix}"
        path.write_bytes(attachment.data)
    say(f"  saved {len(post.attachments)} images as {folder}/{stem}-*.png")


async def _money(stage: Stage, say: _Narrator, failures: list[str]) -> None:
    charged = sum(c.cost_mc for c in stage.emulator.charges)
    change = stage.options.balance_mc - stage.emulator.balance_mc
    async with await stage.open_store() as store:
        entries = await store.ledger.entries()
        open_holds = await store.ledger.open_reservations()
        problems = await store.ledger.audit()
    settled = sum(e.cost_mc or 0 for e in entries if e.kind == LedgerKind.SETTLE)
    say("\nMoney:")
    say(f"  the bot's ledger settled {format_mc(settled)} over {len(entries)} entries")
    say(f"  the emulator charged     {format_mc(charged)}; the balance fell by {format_mc(change)}")
    _expect(failures, settled == charged == change and charged > 0, "ledger != Astria's charges")
    _expect(failures, not open_holds, f"{len(open_holds)} reservations still open")
    _expect(failures, not problems, f"ledger audit: {problems}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(stage.emulator.counters.items()))
    say(f"Requests to Astria: {counts}")
    sends = len(stage.posts())
    say(f"Messages the bot posted in #art: {sends} (429s: {sum(stage.fake.rate_limited.values())})")


def _indent(text: str) -> str:
    return "\n".join(f"  < {line}" for line in text.splitlines()) or "  < (nothing)"


class _Narrator:
    """Prints each step and keeps a transcript."""

    def __init__(self, out: TextIO, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._out = out
        self._file = (folder / "transcript.txt").open("w", encoding="utf-8")

    def __call__(self, line: str) -> None:
        print(line, file=self._out, flush=True)
        print(line, file=self._file)

    def close(self) -> None:
        self._file.close()
