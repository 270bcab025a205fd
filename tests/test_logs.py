"""The bot's logs (bot/logs.py): LOG_LEVEL, text or one JSON object a line, the rotating
file, the job a line is about, and no secret on any line whatever logs it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.actions.context import Actor, Place, acting
from bot.config import ConfigError, load_settings
from bot.logs import LogSetup, about_job, configure_logging, job_context
from bot.store import JobKind, JobRef
from tests.store.helpers import make_settings

KEY = "sd_live_0123456789abcdefSECRET"
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.discord-token-secret-part"
log = logging.getLogger("bot.test")


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def capture(restore_root: None, **setup: object) -> io.StringIO:
    out = io.StringIO()
    configure_logging(LogSetup(**setup), stream=out)  # type: ignore[arg-type]
    return out


def test_json_lines_are_one_object_each_with_level_logger_and_message(restore_root):
    out = capture(restore_root, format="json")
    log.info("hello %s", "there")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("it failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # the traceback stays inside its line
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "bot.test"
    assert first["message"] == "hello there"
    assert first["time"].endswith("+00:00")
    assert "job" not in first  # no job, no ids
    assert second["level"] == "ERROR"
    assert "ValueError: boom" in second["exc"] and "Traceback" in second["exc"]


def test_a_line_about_a_job_names_the_job_its_server_and_member(restore_root):
    out = capture(restore_root, format="json")
    with job_context("prompt:7", guild_id=11, member_id=22):
        log.info("about the job")
        with job_context("prompt:8"):  # a nested job keeps the outer server and member
            log.info("inner")
    log.info("after")
    about, inner, after = (json.loads(line) for line in out.getvalue().splitlines())
    assert (about["job"], about["guild"], about["member"]) == ("prompt:7", 11, 22)
    assert (inner["job"], inner["guild"], inner["member"]) == ("prompt:8", 11, 22)
    assert "job" not in after and "guild" not in after


def test_text_lines_end_with_the_job_ids(restore_root):
    out = capture(restore_root, format="text")
    with job_context(JobRef(JobKind.TUNE, 3), guild_id=1, member_id=2):
        log.warning("stuck")
    log.warning("plain")
    about, plain = out.getvalue().splitlines()
    assert about.endswith("WARNING bot.test: stuck [job=tune:3 guild=1 member=2]")
    assert plain.endswith("WARNING bot.test: plain")


class _Record:
    def __init__(self) -> None:
        self.job = JobRef(JobKind.PROMPT, 40)
        self.guild_id = 5
        self.owner_id = 6


class _Worker:
    @about_job
    async def work(self, record: _Record) -> None:
        log.info("working")
        # A task started here inherits the job, as the tracker's report tasks do.
        await asyncio.create_task(self._later())

    async def _later(self) -> None:
        log.info("later")


async def test_the_tracker_decorator_and_the_actions_set_the_context(restore_root):
    out = capture(restore_root, format="json")
    await _Worker().work(_Record())
    log.info("outside")

    @acting
    async def an_action(svc: object, actor: Actor, place: Place) -> None:
        log.info("acting")

    await an_action(None, Actor(user_id=77), Place(guild_id=88, channel_id=1))
    working, later, outside, action = (json.loads(x) for x in out.getvalue().splitlines())
    assert (working["job"], working["guild"], working["member"]) == ("prompt:40", 5, 6)
    assert later["job"] == "prompt:40"
    assert "job" not in outside
    assert (action["guild"], action["member"]) == (88, 77) and "job" not in action


def test_log_level_hides_what_is_below_it(restore_root):
    out = capture(restore_root, level="WARNING")
    log.info("hidden")
    log.warning("shown")
    assert "hidden" not in out.getvalue() and "shown" in out.getvalue()
    out = capture(restore_root, level="DEBUG")
    log.debug("now shown")
    assert "now shown" in out.getvalue()


def test_log_settings_are_read_and_a_bad_one_carries_an_example():
    settings = make_settings(log_level="debug", log_format="JSON")
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    with pytest.raises(ConfigError) as level:
        load_settings(_env_file=None, log_level="loud")
    assert "LOG_LEVEL" in str(level.value) and "DEBUG" in str(level.value)
    with pytest.raises(ConfigError) as fmt:
        load_settings(_env_file=None, log_format="xml")
    assert "LOG_FORMAT" in str(fmt.value) and "'text'" in str(fmt.value)


def test_the_log_file_rotates_at_its_size_and_keeps_its_backups(restore_root, tmp_path: Path):
    path = tmp_path / "logs" / "bot.log"  # the folder is made
    capture(restore_root, file=path, file_max_bytes=2048, file_backups=2)
    for n in range(200):
        log.info("line %03d %s", n, "x" * 40)
    logging.getLogger().handlers[1].flush()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["bot.log", "bot.log.1", "bot.log.2"]
    for name in files:
        assert (path.parent / name).stat().st_size <= 2048
    assert "line 199" in path.read_text()  # the newest lines are in the live file


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_no_secret_reaches_a_line_whatever_logs_it(restore_root, fmt: str):
    settings = make_settings(astria_api_key=KEY, discord_token=TOKEN, log_format=fmt)
    out = io.StringIO()
    configure_logging(LogSetup.from_settings(settings), stream=out)
    log.warning("the key is %s and the token %s", KEY, TOKEN)
    log.warning(f"headers {{'Authorization': 'Bearer {KEY}'}}")
    with job_context("tune:1", guild_id=1, member_id=2):
        try:
            raise RuntimeError(f"request failed with Bot {TOKEN}")
        except RuntimeError:
            log.exception("failed")
    text = out.getvalue()
    assert KEY not in text and TOKEN not in text
    assert text.count("[secret]") >= 4
    if fmt == "json":
        assert all(json.loads(line) for line in text.splitlines())


def test_the_mask_is_what_hides_the_secrets(restore_root):
    # Without the secrets given to the formatter the same line shows them: the test above
    # can fail.
    out = capture(restore_root)
    log.warning("the key is %s", KEY)
    assert KEY in out.getvalue()
