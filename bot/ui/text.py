"""What members read: status lines and result messages, as pure functions of job events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.jobs.delivery import WAITING_FOR_CREDIT, EventKind, JobEvent, Progress
from bot.rules.credits import format_mc
from bot.rules.prompts import display_text
from bot.rules.tools import VARY_STRONG

MAX_CONTENT = 2000  # Discord's message length limit
LABEL_LIMIT = 100  # characters of a prompt quoted in a status or a result


def timestamp(moment: datetime, style: str = "R") -> str:
    """A Discord timestamp: `<t:…:R>` counts down in every client with no edits."""
    return f"<t:{int(moment.timestamp())}:{style}>"


def mention(user_id: int) -> str:
    return f"<@{user_id}>"


def _what(job: str) -> str:
    return "Your tune" if job.startswith("tune:") else "Your images"


def job_label(text: str) -> str:
    """A prompt or a tune's name as a status or result quotes it: one line, markdown
    escaped, mentions unable to ping, cut with "…"."""
    return display_text(text, limit=LABEL_LIMIT)


def _whose(update: Progress, label: str) -> str:
    """What the job is and whose: "Images for <@42>: “a castle”"."""
    head = "Tune" if update.job.startswith("tune:") else "Images"
    named = f": “{label}”" if label else ""
    return f"{head} for {mention(update.owner_id)}{named}"


def progress_line(update: Progress, *, label: str = "", now: datetime | None = None) -> str:
    """The status message's text for a milestone or a queue position: whose job, which
    prompt or tune (`label`, already made safe by `job_label`), and where it stands. An
    ETA counts down in every client (a Discord timestamp) while it is ahead of `now`;
    once it has passed the line says "any moment now" (the status is shown again then)."""
    whose = _whose(update, label)
    doing = "training" if update.job.startswith("tune:") else "generating"
    if update.state == "queued":
        where = f" (position {update.queue_position})" if update.queue_position else ""
        return f"⏳ {whose}. Waiting in the queue{where}; it starts as soon as a slot frees up."
    if update.state == WAITING_FOR_CREDIT:
        return (
            f"⏳ {whose}. Waiting: the bot's Astria credit has run out. It starts by itself "
            "once the bot's owner adds credit; the credit is held, not spent."
        )
    if update.state in ("training", "generating"):
        if update.eta is None:
            return f"⚙️ {whose}. Now {doing}."
        if now is not None and update.eta <= now:
            return f"⚙️ {whose}. Now {doing}: any moment now."
        return f"⚙️ {whose}. Now {doing}, expected {timestamp(update.eta)}."
    # Shown when the result went elsewhere (by DM) or the job is not over (stuck); when
    # the result is posted beside it, the status message is removed instead.
    finished = {
        "ready": "✅ {whose}. Trained: the details were sent by direct message.",
        "done": "✅ {whose}. Done: the images were sent by direct message.",
        "failed": "❌ {whose}. Could not be made: the reason was sent by direct message.",
        "cancelled": "🚫 {whose}. Cancelled.",
        "stuck": "🐢 {whose}. Taking much longer than expected; still checking.",
        "pack_running": "📦 {whose}. Astria is making the pack: each of its prompts is "
        "posted here as it finishes.",
        "pack_done": "📦 {whose}. The pack is done: each of its prompts was posted here.",
    }
    line = finished.get(update.state, "{whose}: " + update.state.replace("_", " ") + ".")
    return line.format(whose=whose)


@dataclass(frozen=True)
class Made:
    """What a per-image tool made: `tool` ("upscale" or "vary"), from image `image` (1-based)
    at `strength` (a variation's denoising)."""

    tool: str
    image: int
    strength: float | None = None


def result_text(event: JobEvent, *, label: str = "", made: Made | None = None) -> str:
    """The line posted when a job ends (or needs the member's attention); `label` (from
    `job_label`) names the prompt or the tune, so the post says what it answers; `made`
    says which tool made it from which image."""
    who = mention(event.owner_id)
    quoted = f" “{label}”" if label else ""
    about = f" for “{label}”" if label else ""
    reason = f" {event.message}." if event.message else ""
    cost = f" Cost: {format_mc(event.cost_mc)}." if event.cost_mc else ""
    if event.kind == EventKind.READY:
        return (
            f"✅ {who} your tune{quoted} is ready.{cost} Use it with `/imagine` and pick it in the "
            "`tune` option."
        )
    if event.kind == EventKind.DONE and made is not None and made.tool == "upscale":
        return f"⬆️ {who} here is image {made.image} upscaled{about}.{cost}"
    if event.kind == EventKind.DONE and made is not None:
        how = "strong" if (made.strength or 0) >= VARY_STRONG else "subtle"
        return f"🪄 {who} here are {how} variations of image {made.image}{about}.{cost}"
    if event.kind == EventKind.DONE:
        return f"🖼️ {who} here are your images{about}.{cost}"
    if event.kind == EventKind.FAILED:
        money = (
            f" Astria charged {format_mc(event.cost_mc)}."
            if event.cost_mc
            else " Your credit was given back."
        )
        thing = _what(event.job).lower() + (quoted if event.job.startswith("tune:") else about)
        return f"❌ {who} {thing} could not be made.{reason}{money}"
    if event.kind == EventKind.CANCELLED:
        return f"🚫 {who} cancelled{quoted}.{reason}"
    if event.kind == EventKind.STUCK:
        return (
            f"🐢 {who} this is taking much longer than expected. The bot keeps checking and "
            "posts the result when Astria finishes; the credit stays reserved until then, and "
            "an admin can cancel it."
        )
    if event.kind == EventKind.EXPIRY_SOON:
        return f"⌛ {who} your tune will be deleted by Astria soon.{reason}"
    if event.kind == EventKind.EXPIRED:
        return f"🗑️ {who} your tune has expired (Astria deletes tunes 30 days after training)."
    return f"{who} {event.kind}.{reason}"[:MAX_CONTENT]
