"""The real `python -m bot run` process refuses a bad start before it contacts Discord: a
folder or an unwritable path as the database, a wrong Astria key, an unreachable Astria.
Each is one line on stderr naming the setting, exit code 2 and no traceback (`--debug`
shows it). Astria's passing faults at start are retried, so a restart mid-outage starts."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from bot.offline.emulator import Emulator
from bot.offline.emulator.faults import Fault
from tests.conftest import KEY

USERS = "GET /users"


@dataclass
class Tripwire:
    """Stands where Discord would be and notes every request that reaches it; answers
    401, as Discord does to a wrong token."""

    seen: list[str] = field(default_factory=list)
    base_url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(f"{request.method} {request.path}")
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)


@pytest.fixture
async def discord_tripwire() -> AsyncIterator[Tripwire]:
    wire = Tripwire()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", wire.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    wire.base_url = f"http://127.0.0.1:{port}"
    try:
        yield wire
    finally:
        await runner.cleanup()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Start:
    code: int
    err: str
    seconds: float

    def lines_naming(self, setting: str) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith(f"{setting}: ")]


async def start_bot(
    folder: Path, wire: Tripwire, astria_url: str, *args: str, **settings: str
) -> Start:
    env = {
        "HOME": str(folder),
        "PYTHONUNBUFFERED": "1",
        "DISCORD_TOKEN": "offline.bot.token",
        "DISCORD_API_BASE": f"{wire.base_url}/api/v10",
        "DISCORD_GATEWAY_URL": f"{wire.base_url.replace('http', 'ws')}/gateway",
        "ASTRIA_API_KEY": KEY,
        "ASTRIA_BASE_URL": astria_url,
        "ASTRIA_RETRY_BASE_SECONDS": "0.1",
        "ASTRIA_LOOKUP_WAIT_SECONDS": "0.1",
        "DATABASE_PATH": str(folder / "bot.sqlite3"),
        "PHOTOS_DIR": str(folder / "photos"),
        **settings,
    }
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *(args or ("run",)),
        cwd=folder,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60.0)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("the bot did not stop by itself") from None
    assert process.returncode is not None
    return Start(process.returncode, (out + err).decode(), time.monotonic() - started)


def assert_refused(start: Start, setting: str, wire: Tripwire) -> str:
    """Exit 2, exactly one line naming `setting`, no traceback, Discord never contacted."""
    assert start.code == 2, start.err
    assert "Traceback" not in start.err, start.err
    lines = start.lines_naming(setting)
    assert len(lines) == 1, start.err
    assert wire.seen == []
    return lines[0]


async def test_a_folder_as_the_database_is_refused_before_anything(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire
):
    start = await start_bot(tmp_path, discord_tripwire, emulator.base_url, DATABASE_PATH="/tmp")
    line = assert_refused(start, "DATABASE_PATH", discord_tripwire)
    assert "/tmp is a folder, not a database file" in line
    assert "like DATABASE_PATH=data/bot.sqlite3" in line
    assert emulator.counters[USERS] == 0


async def test_an_unwritable_database_path_is_one_line_not_a_file_not_found_error(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire
):
    start = await start_bot(
        tmp_path, discord_tripwire, emulator.base_url, DATABASE_PATH="/proc/x/db"
    )
    line = assert_refused(start, "DATABASE_PATH", discord_tripwire)
    assert "cannot create files in /proc" in line
    assert "FileNotFoundError" not in start.err


async def test_a_wrong_astria_key_names_the_setting_and_where_to_find_the_key(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire
):
    start = await start_bot(
        tmp_path, discord_tripwire, emulator.base_url, ASTRIA_API_KEY="sd_wrong_key"
    )
    line = assert_refused(start, "ASTRIA_API_KEY", discord_tripwire)
    assert "Astria refused the key" in line and "astria.ai/users/edit#api" in line
    assert "sd_wrong_key" not in start.err
    assert emulator.counters[USERS] == 1  # a refusal is not retried


async def test_an_unreachable_astria_is_retried_briefly_then_named(
    tmp_path: Path, discord_tripwire: Tripwire
):
    url = f"http://127.0.0.1:{closed_port()}"
    start = await start_bot(tmp_path, discord_tripwire, url)
    line = assert_refused(start, "ASTRIA_BASE_URL", discord_tripwire)
    assert "cannot reach Astria after 5 tries" in line and f"(now {url})" in line
    assert "network" in line
    assert start.err.count("retry ") == 4, start.err  # the client's retry warnings
    assert start.seconds < 20


@pytest.mark.parametrize("args", [("--debug", "run"), ("run", "--debug")])
async def test_debug_shows_the_traceback_above_the_line(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire, args: tuple[str, ...]
):
    start = await start_bot(
        tmp_path, discord_tripwire, emulator.base_url, *args, ASTRIA_API_KEY="sd_wrong_key"
    )
    assert start.code == 2
    assert "Traceback (most recent call last)" in start.err and "AstriaAuthError" in start.err
    assert start.err.rstrip().splitlines()[-1].startswith("ASTRIA_API_KEY: ")
    assert discord_tripwire.seen == []


async def test_passing_astria_faults_at_start_are_retried_and_a_low_balance_only_warns(
    tmp_path: Path,
    emulator: Emulator,
    discord_tripwire: Tripwire,
):
    emulator.balance_mc = 1_000  # a cent: less than one tune on flux1
    emulator.faults.script(
        USERS, Fault("http_500"), Fault("http_502"), Fault("http_429", retry_after=0.2)
    )
    start = await start_bot(tmp_path, discord_tripwire, emulator.base_url, ASTRIA_BRANCH="flux1")
    assert emulator.counters[USERS] == 4 and start.err.count("retry ") == 3, start.err
    assert "the Astria balance is $0.01, below one tune ($1.50)" in start.err
    # Past the checks, the bot went on to Discord, which refused the token in one line.
    assert discord_tripwire.seen and discord_tripwire.seen[0].endswith("/users/@me")
    line = assert_refused_by_discord(start)
    assert "Reset Token" in line
    assert (tmp_path / "bot.sqlite3").is_file()  # opened and migrated before Discord


def assert_refused_by_discord(start: Start) -> str:
    assert start.code == 2 and "Traceback" not in start.err, start.err
    (line,) = start.lines_naming("DISCORD_TOKEN")
    return line


async def test_an_unreachable_discord_is_one_line_too(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire
):
    nowhere = f"http://127.0.0.1:{closed_port()}"
    start = await start_bot(
        tmp_path, discord_tripwire, emulator.base_url, DISCORD_API_BASE=f"{nowhere}/api/v10"
    )
    assert start.code == 2 and "Traceback" not in start.err, start.err
    (line,) = [x for x in start.err.splitlines() if x.startswith("astria-bot run could not")]
    assert "Cannot connect to host 127.0.0.1" in line and "--debug" in line


async def test_part_of_the_shards_is_refused_on_sqlite_where_processes_cannot_share_jobs(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire
):
    start = await start_bot(
        tmp_path, discord_tripwire, emulator.base_url, SHARD_COUNT="2", SHARD_IDS="1"
    )
    line = assert_refused(start, "SHARD_IDS=1", discord_tripwire)
    assert "1 of 2 shards" in line and "leave SHARD_IDS empty" in line
    assert "DATABASE_URL" in line
    assert not (tmp_path / "bot.sqlite3").exists()  # refused before the store is opened


async def test_a_metrics_port_in_use_is_one_line_before_anything(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire
):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        start = await start_bot(
            tmp_path, discord_tripwire, emulator.base_url, METRICS_PORT=str(port)
        )
    line = assert_refused(start, "METRICS_PORT", discord_tripwire)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "METRICS_PORT=9108" in line
    assert emulator.counters[USERS] == 0


async def test_metrics_on_a_public_address_are_refused_unless_allowed(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire
):
    start = await start_bot(
        tmp_path,
        discord_tripwire,
        emulator.base_url,
        METRICS_PORT=str(closed_port()),
        METRICS_HOST="0.0.0.0",
    )
    assert start.code == 2 and "Traceback" not in start.err, start.err
    assert "METRICS_HOST=0.0.0.0 is not a loopback address" in start.err
    assert "METRICS_ALLOW_PUBLIC=true" in start.err
    assert discord_tripwire.seen == []


async def test_the_log_file_gets_json_lines_and_never_the_key(
    tmp_path: Path, emulator: Emulator, discord_tripwire: Tripwire
):
    """The real process with LOG_FORMAT=json and LOG_FILE: Astria refuses the key, the
    lines are JSON objects in the file (and on stderr), and neither holds the key."""
    wrong = "sd_wrong_but_secret_key_1234"
    log_file = tmp_path / "logs" / "bot.log"
    start = await start_bot(
        tmp_path,
        discord_tripwire,
        emulator.base_url,
        ASTRIA_API_KEY=wrong,
        LOG_FORMAT="json",
        LOG_FILE=str(log_file),
        LOG_LEVEL="debug",
    )
    assert_refused(start, "ASTRIA_API_KEY", discord_tripwire)
    lines = log_file.read_text().splitlines()
    assert lines, "nothing was logged to the file"
    records = [json.loads(line) for line in lines]
    assert {r["level"] for r in records} >= {"INFO"}
    assert any(r["level"] == "DEBUG" for r in records)  # LOG_LEVEL=debug applies
    assert wrong not in log_file.read_text() and wrong not in start.err
