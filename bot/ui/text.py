"""What members read: status lines and result messages, as pure functions of job events."""

from __future__ import annotations

from datetime import datetime

from bot.jobs.delivery import WAITING_FOR_CREDIT, EventKind, JobEvent, Progress
from bot.rules.credits import format_mc

MAX_CONTENT = 2000  # Discord's message length limit


def timestamp(moment: datetime, style: str = "R") -> str:
    """A Discord timestamp: `<t:…:R>` counts down in every client with no edits."""
    return f"<t:{int(moment.timestamp())}:{style}>"


def mention(user_id: int) -> str:
    return f"<@{user_id}>"


def _what(job: str) -> str:
    return "Your tune" if job.startswith("tune:") else "Your images"


def progress_line(update: Progress) -> str:
    """The status message's text for a milestone or a queue position."""
    what = "Training" if update.job.startswith("tune:") else "Generating"
    if update.state == "queued":
        where = f" (position {update.queue_position})" if update.queue_position else ""
        return f"⏳ Waiting in the queue{where}; it starts as soon as a slot frees up."
    if update.state == WAITING_FOR_CREDIT:
        return (
            "⏳ Waiting: the bot's Astria credit has run out. It starts by itself once the "
            "bot's owner adds credit; your credit is held, not spent."
        )
    if update.state in ("training", "generating"):
        eta = f", ready {timestamp(update.eta)}" if update.eta else ""
        return f"⚙️ {what}{eta}."
    finished = {
        "ready": "✅ Trained: see the message below.",
        "done": "✅ Done: the images are below.",
        "failed": "❌ Could not be made: see below.",
        "cancelled": "🚫 Cancelled.",
        "stuck": "🐢 Taking much longer than expected; still checking.",
    }
    return finished.get(update.state, f"{what}: {update.state}.")


def result_text(event: JobEvent) -> str:
    """The line posted when a job ends (or needs the member's attention)."""
    who = mention(event.owner_id)
    reason = f" {event.message}." if event.message else ""
    cost = f" Cost: {format_mc(event.cost_mc)}." if event.cost_mc else ""
    if event.kind == EventKind.READY:
        return (
            f"✅ {who} your tune is ready.{cost} Use it with `/imagine` and pick it in the "
            "`tune` option."
        )
    if event.kind == EventKind.DONE:
        return f"🖼️ {who} here are your images.{cost}"
    if event.kind == EventKind.FAILED:
        money = (
            f" Astria charged {format_mc(event.cost_mc)}."
            if event.cost_mc
            else " Your credit was given back."
        )
        return f"❌ {who} {_what(event.job).lower()} could not be made.{reason}{money}"
    if event.kind == EventKind.CANCELLED:
        return f"🚫 {who} cancelled.{reason}"
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
