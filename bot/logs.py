"""How the bot logs: the level, text or one JSON object a line, an optional rotating file,
the job a line is about (its job, server and member ids), and no secret on any line.

A job's context is a contextvar, set where the tracker and the use cases work on a job
(`job_context`), so every line logged under it, in any module, carries the ids; tasks
started inside inherit it. The secrets (the Astria key, the Discord token, the callback
signing key) are masked in the finished line, whatever put them there: a belt under the
braces of SecretStr.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import logging.handlers
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TextIO, TypeVar

if TYPE_CHECKING:
    from bot.config import Settings

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(job_suffix)s"
MASK = "[secret]"
# Shorter secrets are not masked: they would mask ordinary words (no real one is this short).
MIN_SECRET_LENGTH = 8


@dataclass(frozen=True)
class JobContext:
    """What a log line about a job names: the job (`tune:12`, `prompt:40`), its server and
    its member. A field left None is not shown."""

    job: str | None = None
    guild_id: int | None = None
    member_id: int | None = None

    def fields(self) -> dict[str, str | int]:
        found: dict[str, str | int | None] = {
            "job": self.job,
            "guild": self.guild_id,
            "member": self.member_id,
        }
        return {k: v for k, v in found.items() if v is not None}


_context: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar(
    "astria_bot_job_context", default=None
)


def current_job() -> JobContext | None:
    return _context.get()


@contextlib.contextmanager
def job_context(
    job: object | None = None, *, guild_id: int | None = None, member_id: int | None = None
) -> Iterator[JobContext]:
    """Every line logged inside names this job (and the server and member); fields not
    given are kept from an outer context, so an action that knows the member first and
    the job later can nest."""
    outer = _context.get() or JobContext()
    inner = replace(
        outer,
        job=str(job) if job is not None else outer.job,
        guild_id=guild_id if guild_id is not None else outer.guild_id,
        member_id=member_id if member_id is not None else outer.member_id,
    )
    token = _context.set(inner)
    try:
        yield inner
    finally:
        _context.reset(token)


def bind_job(
    job: object | None = None, *, guild_id: int | None = None, member_id: int | None = None
) -> None:
    """Set the job for the rest of the current context: inside a `job_context` or an
    `about_job` method (which restore the outer one when they end), or in a task of its
    own (whose context ends with it)."""
    outer = _context.get() or JobContext()
    _context.set(
        replace(
            outer,
            job=str(job) if job is not None else outer.job,
            guild_id=guild_id if guild_id is not None else outer.guild_id,
            member_id=member_id if member_id is not None else outer.member_id,
        )
    )


def bind_record(subject: object) -> None:
    """`bind_job` from anything that has a `job` and perhaps a `guild_id` and an
    `owner_id` (a tune or prompt record, a job event, a watch)."""
    bind_job(
        getattr(subject, "job", None),
        guild_id=getattr(subject, "guild_id", None),
        member_id=getattr(subject, "owner_id", None),
    )


P = ParamSpec("P")
R = TypeVar("R")


def about_job(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """For a method whose first argument after `self` is the job (a record, an event, a
    watch): every line it logs names that job, its server and member."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _context.set(_context.get())
        try:
            if len(args) > 1:
                bind_record(args[1])
            return await method(*args, **kwargs)
        finally:
            _context.reset(token)

    return wrapper


class JobContextFilter(logging.Filter):
    """Puts the current job's ids on every record (`job`, `guild`, `member`, and
    `job_suffix` for the text format); an id the caller set with `extra=` is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        fields = context.fields() if context is not None else {}
        for name, value in fields.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        shown = {n: getattr(record, n) for n in ("job", "guild", "member") if hasattr(record, n)}
        record.job_suffix = (
            " [" + " ".join(f"{k}={v}" for k, v in shown.items()) + "]" if shown else ""
        )
        return True


class _Masking:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted(
            {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )

    def mask(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


class TextFormatter(logging.Formatter):
    """The classic line, the job's ids at its end, secrets masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self._masking = _Masking(secrets)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "job_suffix"):
            JobContextFilter().filter(record)
        return self._masking.mask(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, the job's ids
    when there is a job, and the traceback as `exc` when there is one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._masking = _Masking(secrets)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "job_suffix"):
            JobContextFilter().filter(record)
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self._masking.mask(record.getMessage()),
        }
        for name in ("job", "guild", "member"):
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exc"] = self._masking.mask(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = self._masking.mask(record.exc_text)
        if record.stack_info:
            line["stack"] = self._masking.mask(self.formatStack(record.stack_info))
        # ensure_ascii keeps a line one line whatever a message holds; the mask runs on
        # the values, so an escaped secret cannot slip past it.
        return json.dumps(line, ensure_ascii=True, default=str)


@dataclass(frozen=True)
class LogSetup:
    level: str = "INFO"
    format: LogFormat = "text"
    file: Path | None = None
    file_max_bytes: int = 10 * 1024 * 1024
    file_backups: int = 5
    secrets: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> LogSetup:
        secrets = tuple(
            s.get_secret_value()
            for s in (
                settings.astria_api_key,
                settings.discord_token,
                settings.callback_signing_key,
            )
            if s is not None
        )
        return cls(
            level=settings.log_level,
            format=settings.log_format,
            file=settings.log_file,
            file_max_bytes=settings.log_file_max_bytes,
            file_backups=settings.log_file_backups,
            secrets=secrets,
        )


def formatter(setup: LogSetup) -> logging.Formatter:
    if setup.format == "json":
        return JsonFormatter(setup.secrets)
    return TextFormatter(setup.secrets)


def configure_logging(setup: LogSetup, *, stream: TextIO | None = None) -> list[logging.Handler]:
    """Replace the root logger's handlers with ours (stderr, and the file when set); the
    handlers, for tests to close."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if setup.file is not None:
        setup.file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                setup.file,
                maxBytes=setup.file_max_bytes,
                backupCount=setup.file_backups,
                encoding="utf-8",
            )
        )
    shown = formatter(setup)
    for handler in handlers:
        handler.addFilter(JobContextFilter())
        handler.setFormatter(shown)
        root.addHandler(handler)
    root.setLevel(setup.level)
    return handlers
