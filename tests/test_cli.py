"""The command line: `check` against the emulator, readable config errors, and the demo."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.check import database_problem, run_check
from bot.cli import main
from bot.config import Settings, load_settings
from bot.offline.demo import run_demo
from bot.offline.emulator import Emulator
from bot.store import Store
from tests.conftest import KEY


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


async def check_output(**values: object) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_check(load_settings(**values), out=out)
    return code, out.getvalue()


async def test_check_reports_balance_idempotency_and_what_is_missing(
    emulator: Emulator, tmp_path: Path
):
    code, text = await check_output(
        astria_api_key=KEY,
        astria_base_url=emulator.base_url,
        database_path=tmp_path / "db" / "bot.sqlite3",
    )
    assert code == 0
    assert "$50.00" in text and "5,000,000 mc" in text
    assert "idempotency at Astria: off (two creates with one title gave two tunes)" in text
    assert "ASTRIA_IDEMPOTENCY=auto): off" in text and "looks the tune or prompt up" in text
    assert emulator.our_tunes() == []  # the probe's tunes are gone
    assert "training preset: flux-lora-portrait" in text
    assert "is writable (not there yet" in text
    assert not (tmp_path / "db").exists()  # check creates nothing
    assert "DISCORD_TOKEN" in text and "PUBLIC_CALLBACK_URL" in text
    assert KEY not in text
    assert emulator.counters["GET /users"] == 1


async def test_check_says_how_the_process_runs_and_where_logs_and_metrics_go(
    emulator: Emulator, tmp_path: Path
):
    _, alone = await check_output(
        astria_api_key=KEY, astria_base_url=emulator.base_url, process_id="bot-a"
    )
    assert "Process: bot-a, the only process on its SQLite file" in alone
    assert "Astria requests: 5/s, bursts of 5, for this process" in alone
    assert "logs: INFO and up, as text, to standard error" in alone
    assert "metrics: off (METRICS_PORT turns them on)" in alone
    _, shared = await check_output(
        astria_api_key=KEY,
        astria_base_url=emulator.base_url,
        database_url="postgresql://postgres@127.0.0.1:1/nowhere",
        process_id="bot-b",
        lease_seconds=12,
        shard_count=4,
        shard_ids="1,3",
        log_level="DEBUG",
        log_format="json",
        log_file=tmp_path / "bot.log",
        metrics_port=9108,
    )
    assert "Process: bot-b, shares the jobs through leases of 12 s" in shared
    together = "for all processes together (one budget in the database)"
    assert f"Astria requests: 5/s, bursts of 5, {together}" in shared
    assert "shards: 1, 3 of 4" in shared
    assert f"logs: DEBUG and up, as json, to {tmp_path / 'bot.log'}" in shared
    assert "metrics: http://127.0.0.1:9108/metrics" in shared
    assert "Database: cannot open the database" in shared  # said, not a traceback


@pytest.mark.parametrize("on", [True, False], ids=["idem-on", "idem-off"])
async def test_check_probes_idempotency_and_keeps_the_answer_for_the_start(
    emulator: Emulator, tmp_path: Path, on: bool
):
    emulator.config.idempotency = on
    database = tmp_path / "bot.sqlite3"
    values = {"astria_api_key": KEY, "astria_base_url": emulator.base_url}
    settings = load_settings(**values, database_path=database)
    # With no database yet, check creates none (the start will probe).
    code, _ = await check_output(**values, database_path=database)
    assert code == 0 and not database.exists()
    async with await Store.open(database, settings=settings):
        pass  # the bot has run once
    code, text = await check_output(**values, database_path=database)
    word = "on" if on else "off"
    assert code == 0, text
    assert f"idempotency at Astria: {word} (" in text
    assert f"(ASTRIA_IDEMPOTENCY=auto): {word}:" in text
    assert emulator.counters["POST /tunes"] == 4 and emulator.our_tunes() == []
    async with await Store.open(database, settings=settings) as store:
        kept = await store.meta.idempotency_probe()
    assert kept is not None and kept.on is on


async def test_check_names_a_contradicting_setting_and_the_fix(emulator: Emulator):
    emulator.config.idempotency = False
    code, text = await check_output(
        astria_api_key=KEY, astria_base_url=emulator.base_url, astria_idempotency="true"
    )
    assert code == 1
    refusal = "the bot would not start: ASTRIA_IDEMPOTENCY=true, but Astria's idempotency is off"
    assert refusal in text
    assert "set ASTRIA_IDEMPOTENCY=auto or ASTRIA_IDEMPOTENCY=false" in text


async def test_check_warns_that_no_flux_preset_trains_longer_than_the_price_assumes(
    emulator: Emulator, tmp_path: Path
):
    code, text = await check_output(
        astria_api_key=KEY,
        astria_base_url=emulator.base_url,
        database_path=tmp_path / "bot.sqlite3",
        astria_branch="flux1",
        flux_training_preset="none",
    )
    assert code == 0
    assert "training preset: none" in text and "3.7x" in text and "TUNE_PRICE_MC" in text


async def test_check_says_the_key_is_wrong_and_where_to_find_it(emulator: Emulator):
    code, text = await check_output(astria_api_key="sd_nope", astria_base_url=emulator.base_url)
    assert code == 1
    assert "the Astria key is wrong" in text and "astria.ai/users/edit#api" in text
    assert "sd_nope" not in text


async def test_check_without_a_key_says_how_to_set_it():
    code, text = await check_output()
    assert code == 1 and "ASTRIA_API_KEY is not set" in text


def test_database_problem_names_an_unwritable_folder(tmp_path: Path):
    assert database_problem(tmp_path / "x.sqlite3") is None
    assert database_problem(tmp_path / "new" / "deeper" / "x.sqlite3") is None
    blocker = tmp_path / "file"
    blocker.write_text("")
    problem = database_problem(blocker / "sub" / "x.sqlite3")
    assert problem is not None and "is a file, not a folder" in problem
    # Even root cannot create files in /proc: the nearest existing parent is tried.
    problem = database_problem(Path("/proc/x/db"))
    assert problem is not None and "cannot create files in /proc" in problem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing was created


async def test_check_refuses_a_folder_as_the_database(tmp_path: Path):
    code, text = await check_output(database_path=tmp_path)
    assert code == 1
    assert f"Database: {tmp_path} is a folder, not a database file" in text


def test_check_creates_nothing_and_says_no_env_file_was_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert main(["check"]) == 1  # no key
    out = capsys.readouterr().out
    assert f"Settings: no .env found in {tmp_path}; using the environment and defaults" in out
    assert "Database: data/bot.sqlite3 is writable (not there yet" in out
    assert list(tmp_path.iterdir()) == []


def test_check_names_the_env_file_it_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / ".env").write_text("DATABASE_PATH=elsewhere/bot.sqlite3\n")
    main(["check"])
    out = capsys.readouterr().out
    assert f"Settings: read {tmp_path / '.env'} and the environment" in out
    assert "Database: elsewhere/bot.sqlite3 is writable" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_cli_turns_bad_settings_into_one_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("ASTRIA_BRANCH", "gold")
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "ASTRIA_BRANCH" in err and "Traceback" not in err


def test_check_refuses_a_branch_the_profile_does_not_support(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("ASTRIA_BRANCH", "sd15")
    monkeypatch.setenv("MODEL_PROFILE", "flux-lora")
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "ASTRIA_BRANCH=sd15 does not go with MODEL_PROFILE=flux-lora" in err
    assert "Valid pairs: flux-lora: fast, flux1" in err and "Traceback" not in err


def test_run_refuses_sdxl1_before_connecting_anywhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("ASTRIA_BRANCH", "sdxl1")
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "No profile trains SDXL tunes, so sdxl1 is not offered" in err


def test_cli_run_names_missing_secrets(capsys: pytest.CaptureFixture[str]):
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "DISCORD_TOKEN is not set" in err and "ASTRIA_API_KEY is not set" in err


async def test_demo_runs_the_scripted_session_against_the_real_bot_process(tmp_path: Path):
    out = io.StringIO()
    code = await run_demo("out", out, speed=4.0)  # relative, as `make demo` gives it
    text = out.getvalue()
    assert code == 0, text
    images = sorted(p for p in (tmp_path / "out").glob("*.png") if p.name != "spend-chart.png")
    # /imagine 4, Reroll 4, Upscale 1, Vary subtle 4 and strong 4, Edit 4, /imagine 8,
    # /pack run 6 (2 + 1 + 3)
    assert len(images) == 35 and all(p.read_bytes().startswith(b"\x89PNG") for p in images)
    assert len(list((tmp_path / "out").glob("pack-*.png"))) == 6
    assert (tmp_path / "out" / "upscale-1.png").exists()
    for stem in ("vary", "strong", "edit"):
        assert len(list((tmp_path / "out").glob(f"{stem}-*.png"))) == 4, stem
    # The admin's spend chart, attached over the wire fake and saved: it opens as an image.
    from PIL import Image

    from bot.report.spend_chart import HEIGHT, WIDTH

    with Image.open(tmp_path / "out" / "spend-chart.png") as chart:
        chart.load()
        assert chart.format == "PNG" and chart.size == (WIDTH, HEIGHT)
        assert len(chart.convert("RGB").getcolors(maxcolors=1_000_000) or []) > 50
    assert "saved the spend chart (1200x800) as out/spend-chart.png" in text
    steps = ("too small", "is ready", "Rerolling", "Upscaling image 2", "upscaled", "as a reply")
    more = ("subtle variations of image 1", "strong variations of image 3", "golden hour")
    packs = ("Fantasy Worlds**: $0.90", "Queued the pack **Fantasy Worlds**", "The pack is done")
    for step in (*steps, *more, "Not queued", "Queued 8 images", *packs):
        assert step in text, step
    assert "the emulator charged" in text and "all steps passed" in text
    assert (tmp_path / "out" / "transcript.txt").read_text() == text
    assert "Traceback" not in (tmp_path / "out" / "run" / "bot-1.log").read_text()


def test_invite_link_has_the_scopes_and_only_the_needed_permissions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import base64

    from bot.invite import needed_permissions

    app_id = 123456789012345678
    token = base64.b64encode(str(app_id).encode()).decode().rstrip("=") + ".abc.def"
    monkeypatch.setenv("DISCORD_TOKEN", token)
    assert main(["invite"]) == 0
    url = capsys.readouterr().out.strip()
    assert f"client_id={app_id}" in url
    assert "scope=bot+applications.commands" in url
    assert f"permissions={needed_permissions().value}" in url
    assert not needed_permissions().administrator and not needed_permissions().manage_messages
    assert token not in url
    monkeypatch.delenv("DISCORD_TOKEN")
    assert main(["invite"]) == 2
    assert "or set DISCORD_TOKEN" in capsys.readouterr().err
    assert main(["invite", "--application-id", "42"]) == 0


def test_invite_with_a_malformed_token_says_the_token_is_wrong(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("DISCORD_TOKEN", "not-a-bot-token")
    assert main(["invite"]) == 2
    err = capsys.readouterr().err
    assert "DISCORD_TOKEN does not start with an application id" in err
    assert "Reset Token" in err and "--application-id" in err
    assert "set DISCORD_TOKEN" not in err and "not-a-bot-token" not in err


async def test_check_without_a_signing_key_prints_a_fresh_strong_one():
    _, text = await check_output()
    (line,) = [x for x in text.splitlines() if "CALLBACK_SIGNING_KEY=" in x]
    key = line.split("CALLBACK_SIGNING_KEY=", 1)[1].strip()
    assert load_settings(callback_signing_key=key).callback_signing_key is not None
    _, again = await check_output()
    assert key not in again  # generated each time, never a fixed example


def test_check_with_a_weak_signing_key_names_it_and_prints_a_strong_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv("CALLBACK_SIGNING_KEY", "k")
    assert main(["check"]) == 2
    err = capsys.readouterr().err
    assert "CALLBACK_SIGNING_KEY: is too weak" in err and "Traceback" not in err
    key = err.split("CALLBACK_SIGNING_KEY=", 1)[1].split()[0]
    assert load_settings(callback_signing_key=key).callback_signing_key is not None
