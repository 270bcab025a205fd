"""Command latency: from the interaction reaching the bot (the Discord fake dispatching
INTERACTION_CREATE) to its first response (the callback), with 1, 50 and 200 members
issuing a command at the same moment, against a trivial discord.py bot measured in the same
run.

The real bot runs as its own process (`bot.offline.stage.Stage`: the Astria emulator and the
wire-level Discord fake on 127.0.0.1 in this process, in real time). One member trains a tune
and an admin shares it with the server, so that every member's `/imagine` is a real one (a
reservation, a queued job, a status message). The commands, each timed by the fake from
dispatch to the first accepted callback (`InteractionHandle.latency`):

- `/help`, `/balance`: a thinking defer first, then the answer as a followup;
- `/imagine`: a thinking defer first, then the reservation and "Queued";
- `/tune create`: the form (a modal) as the first response, after the fast checks (rules,
  permissions, the budget read from the ledger).

Baseline: `bench.trivial_bot_process`, a discord.py bot with the same command names that
answers each the same way (defer + followup, or a modal) and does nothing else, connected
to its own Discord fake in this process; the bursts alternate between the two bots, so both
see the same noise. A burst sends every member's INTERACTION_CREATE at once over the one
gateway connection, spread over ten channels. An answer later than the fake's
`interaction_deadline` (3 s, Discord's) is refused with 10062 and counted as missed.

    .venv/bin/python -m bench.command_latency [--quick]
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Goal, Table, median, p99, parse_args, report, times, work_dir
from bench.rig import small_photo
from bench.trivial_bot_process import TrivialBot
from bot.offline.fakecord import FakeDiscord, FakeDiscordConfig
from bot.offline.fakecord.interactions import DEFERRED_CHANNEL_MESSAGE, InteractionHandle
from bot.offline.fakecord.state import Channel, Member
from bot.offline.stage import Stage, StageOptions

CHANNELS = 10
COMMANDS = ("help", "balance", "tune create", "imagine")
GOAL_WELL_UNDER = 1.0  # "well under Discord's 3 s": a third of it
GOAL_AIM = 0.1
SETTLE = 0.3  # seconds between bursts
COMPLETE_WITHIN = 20.0  # how long a burst waits for its deferred answers to be completed


@dataclass(frozen=True)
class Sizes:
    levels: tuple[int, ...]
    repeats: dict[int, int]  # bursts per level (sequential single commands for level 1)

    @property
    def members(self) -> int:
        return max(self.levels)


FULL = Sizes(levels=(1, 50, 200), repeats={1: 30, 50: 5, 200: 5})
QUICK = Sizes(levels=(1, 10, 50), repeats={1: 5, 10: 1, 50: 1})


# ---------------------------------------------------------------------- one side


@dataclass
class Side:
    """One bot and the fake it is connected to, with its members and channels."""

    name: str
    fake: FakeDiscord
    members: list[Member]
    channels: list[Channel]
    tune: str  # /imagine's tune option

    def options(self, command: str, label: str) -> dict[str, Any]:
        if command == "imagine":
            return {"prompt": f"portrait, {label}", "tune": self.tune}
        return {}


@dataclass
class Figures:
    """Every interaction of one command at one level on one side."""

    latencies: list[float] = field(default_factory=list)  # first response (missed: refusal)
    missed: int = 0
    deferred: int = 0
    completed: list[float] = field(default_factory=list)  # dispatch -> deferral completed
    errors: list[str] = field(default_factory=list)
    spreads: list[float] = field(default_factory=list)  # first -> last dispatch of a burst

    @property
    def count(self) -> int:
        return len(self.latencies)


async def burst(side: Side, command: str, members: Sequence[Member], label: str) -> Figures:
    """Every member issues `command` at once; until each got its first response (or was
    refused as too late) and every deferral was completed."""
    fake = side.fake
    handles: list[InteractionHandle] = await asyncio.gather(
        *(
            fake.slash(
                member,
                side.channels[n % len(side.channels)],
                command,
                **side.options(command, f"{label} {n}"),
            )
            for n, member in enumerate(members)
        )
    )
    figures = Figures()
    sent = [h.dispatched_at for h in handles]
    figures.spreads.append(max(sent) - min(sent))
    deadline = fake.config.interaction_deadline
    first: dict[int, float] = {}
    done: dict[int, float] = {}
    started = fake.config.clock()
    while True:
        now = fake.config.clock()
        for n, handle in enumerate(handles):
            if n not in first:
                if handle.reply is not None:
                    first[n] = handle.reply.latency
                elif handle.rejections or now - handle.dispatched_at > deadline + 5.0:
                    first[n] = math.inf if not handle.rejections else now - handle.dispatched_at
            reply = handle.reply
            if (
                n not in done
                and reply is not None
                and reply.type == DEFERRED_CHANNEL_MESSAGE
                and not handle.thinking
            ):
                done[n] = now - handle.dispatched_at
        waiting_first = len(first) < len(handles)
        deferred = sum(
            1 for h in handles if h.reply is not None and h.reply.type == DEFERRED_CHANNEL_MESSAGE
        )
        if not waiting_first and (len(done) >= deferred or now - started > COMPLETE_WITHIN):
            break
        await asyncio.sleep(0.01)
    for n, handle in enumerate(handles):
        figures.latencies.append(first[n])
        if handle.reply is None:
            figures.missed += 1
            codes = ", ".join(str(c) for c in handle.rejections) or "no answer"
            figures.errors.append(codes)
        elif handle.reply.type == DEFERRED_CHANNEL_MESSAGE:
            figures.deferred += 1
            if n in done:
                figures.completed.append(done[n])
    return figures


def merge(into: Figures, more: Figures) -> None:
    into.latencies += more.latencies
    into.missed += more.missed
    into.deferred += more.deferred
    into.completed += more.completed
    into.errors += more.errors
    into.spreads += more.spreads


# ---------------------------------------------------------------------- the two bots


async def bot_side(stage: Stage, sizes: Sizes) -> Side:
    """The real bot: channels, members, a tune trained by one member and shared."""
    fake = stage.fake
    channels = [stage.channel]
    for n in range(1, CHANNELS):
        channels.append(await fake.create_channel(stage.guild, f"art-{n}"))
    await stage.start_bot()
    await fake.wait_commands(30.0)
    owner = stage.members["owner"]
    photos = [(f"{n}.jpg", small_photo(n)) for n in range(4)]
    answer = await stage.train(owner, "studio", photos)
    if "Training" not in answer:
        raise RuntimeError(f"the tune was not queued: {answer}")
    await stage.wait_for(
        lambda: any("is ready" in m.content for m in stage.posts()), "the tune", timeout=60.0
    )
    tune = await stage.tune_choice(owner)
    shared = await stage.command(stage.admin, "admin share", tune=tune)
    if "shared" not in shared:
        raise RuntimeError(f"the tune was not shared: {shared}")
    members = [await fake.create_member(stage.guild, f"m{n:03d}") for n in range(sizes.members)]
    return Side("bot", fake, members, channels, tune)


async def trivial_side(fake: FakeDiscord, trivial: TrivialBot, sizes: Sizes) -> Side:
    guild = await fake.create_guild("Baseline")
    channels = [await fake.create_channel(guild, f"art-{n}") for n in range(CHANNELS)]
    members = [await fake.create_member(guild, f"m{n:03d}") for n in range(sizes.members)]
    await trivial.start()
    await fake.wait_commands(30.0)
    return Side("trivial", fake, members, channels, "1")


Results = dict[tuple[str, str, int], Figures]  # (side, command, level)


async def measure(sides: Sequence[Side], sizes: Sizes) -> Results:
    """Each level and command in turn; the sides alternate burst by burst."""
    results: Results = {}
    started = time.perf_counter()
    for level in sizes.levels:
        for command in COMMANDS:
            for repeat in range(sizes.repeats[level]):
                for side in sides:
                    offset = (repeat * level) % sizes.members
                    chosen = [side.members[(offset + n) % sizes.members] for n in range(level)]
                    label = f"{level} members, burst {repeat}"
                    figures = await burst(side, command, chosen, label)
                    merge(results.setdefault((side.name, command, level), Figures()), figures)
                    await asyncio.sleep(SETTLE if level > 1 else 0.02)
        print(f"  {level} member(s) done ({time.perf_counter() - started:.0f} s)", flush=True)
    return results


async def run_all(folder: Path, quick: bool) -> int:
    sizes = QUICK if quick else FULL
    shutil.rmtree(folder / "stage", ignore_errors=True)  # a fresh database for a fresh fake
    options = StageOptions(
        folder=folder / "stage",
        train_seconds=1.5,
        prompt_seconds=600.0,  # no prompt finishes (or is polled) during the bursts
        balance_mc=10**10,
        members=("owner",),
    )
    baseline_fake = FakeDiscord(FakeDiscordConfig())
    await baseline_fake.start()
    trivial = TrivialBot(baseline_fake.api_base, baseline_fake.gateway_url, folder / "trivial.log")
    stage = Stage(options)
    try:
        await stage.start()
        bot = await bot_side(stage, sizes)
        baseline = await trivial_side(baseline_fake, trivial, sizes)
        print(f"  both bots ready, {sizes.members} members each", flush=True)
        results = await measure([baseline, bot], sizes)
    finally:
        await trivial.stop()
        await baseline_fake.stop()
        await stage.kill_bot()  # its queue of hundreds of prompts needs no clean stop
        await stage.stop()
    return summarise(sizes, results, stage.fake.config.interaction_deadline)


# ---------------------------------------------------------------------- the report


def ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "no answer"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def summarise(sizes: Sizes, results: Results, deadline: float) -> int:
    table = Table(
        [
            "command",
            "members",
            "n",
            "bot p50",
            "bot p99",
            "trivial p50",
            "trivial p99",
            "÷ trivial (p50)",
            "÷ trivial (p99)",
            "missed 3 s",
            "bot: answer done p99",
            "dispatch spread",
        ]
    )
    top = max(sizes.levels)
    goals: list[Goal] = []
    missed_total = 0
    worst_top: list[tuple[str, float]] = []
    for command in COMMANDS:
        for level in sizes.levels:
            mine = results[("bot", command, level)]
            base = results[("trivial", command, level)]
            missed_total += mine.missed
            done = (
                f"{ms(p99(mine.completed))} ({len(mine.completed)}/{mine.deferred})"
                if mine.deferred
                else "(modal)"
            )
            table.add(
                f"/{command}",
                level,
                mine.count,
                ms(median(mine.latencies)),
                ms(p99(mine.latencies)),
                ms(median(base.latencies)),
                ms(p99(base.latencies)),
                times(median(mine.latencies), median(base.latencies)),
                times(p99(mine.latencies), p99(base.latencies)),
                f"{mine.missed} / {base.missed}",
                done,
                ms(median(mine.spreads)) if level > 1 else "-",
            )
            if level == top:
                worst_top.append((command, p99(mine.latencies)))
    errors = sorted({e for f in results.values() for e in f.errors})
    goals.append(
        Goal(
            f"every interaction answered within Discord's {deadline:g} s, at every level",
            missed_total == 0,
            f"{missed_total} missed" + (f" ({', '.join(errors)})" if errors else ""),
        )
    )
    worst_command, worst = max(worst_top, key=lambda item: item[1])
    detail = ", ".join(f"/{c} {ms(v)}" for c, v in worst_top)
    goals.append(
        Goal(
            f"p99 well under {deadline:g} s (under {GOAL_WELL_UNDER:g} s) with {top} members "
            "at once, every command",
            worst < GOAL_WELL_UNDER,
            detail,
        )
    )
    goals.append(
        Goal(
            f"aim: p99 at most {ms(GOAL_AIM)} with {top} members at once, every command",
            worst <= GOAL_AIM,
            f"worst /{worst_command} {ms(worst)}",
        )
    )
    help_one = results[("bot", "help", 1)]
    notes = [
        "latency = the fake dispatching INTERACTION_CREATE -> the bot's first callback "
        "reaching the fake (InteractionHandle.latency, the fake's monotonic clock); both the "
        "fakes and the emulator run in this process, so part of each figure is this process "
        "serving a burst (the trivial bot's column shows how much)",
        f"n = interactions: level 1 is {sizes.repeats[1]} single commands in turn; larger "
        "levels are bursts of that many members at once "
        f"({', '.join(f'{lvl}: {sizes.repeats[lvl]}' for lvl in sizes.levels[1:])} bursts), "
        f"over {CHANNELS} channels; the two bots alternate burst by burst",
        "dispatch spread = the fake's time to send one burst's INTERACTION_CREATEs, first to "
        "last (median over the bot's bursts); each latency counts from its own dispatch, so "
        "the rest of a burst's latency is the bot and the callbacks queueing, not the sending",
        "missed 3 s = bot / trivial interactions with no first response accepted within the "
        "fake's interaction_deadline (their latency counts as when the fake refused them)",
        "answer done = dispatch -> the deferred reply completed by the followup (what the "
        "member waits for: /imagine's reservation and queueing happen in it); (k/n) = "
        f"completed within {COMPLETE_WITHIN:g} s",
        f"the same bot's /help at 1 member: p50 {ms(median(help_one.latencies))}, "
        f"p99 {ms(p99(help_one.latencies))}",
        "/imagine uses a tune one member trained and an admin shared; each one reserves and "
        "queues a real job (prompts last 600 s at the emulator: none ends during the run)",
    ]
    return report("Command latency (INTERACTION_CREATE -> first response)", [table], goals, notes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv)
    with work_dir(args.dir, "command-latency") as folder:
        return asyncio.run(run_all(folder, args.quick))


if __name__ == "__main__":
    raise SystemExit(main())
