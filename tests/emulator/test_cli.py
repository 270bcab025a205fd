"""The command line: argument parsing, serving until told to stop, refusing public hosts."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import pytest

from bot.offline.emulator.cli import build_config, main, parse_args, serve


class Output(io.StringIO):
    """Captured stdout that says when the banner has been flushed."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = asyncio.Event()

    def flush(self) -> None:
        super().flush()
        self.flushed.set()


def test_defaults() -> None:
    args = parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 8765)
    config = build_config(args)
    assert config.api_key == "sd_emulator_key" and config.idempotency is False


def test_every_option_reaches_the_config() -> None:
    args = parse_args(
        [
            "--host=127.0.0.1",
            "--port=9000",
            "--key=sd_test",
            "--idempotency",
            "--balance-mc=123",
            "--train-seconds=5",
            "--prompt-seconds=2.5",
            "--foreign-tunes=3",
            "--foreign-prompts=4",
            "--seed=9",
            "--auto-extend",
            "--auto-extend-price-mc=7",
        ]
    )
    assert args.port == 9000
    config = build_config(args)
    assert (config.api_key, config.idempotency, config.balance_mc) == ("sd_test", True, 123)
    assert (config.train_seconds, config.prompt_seconds) == (5.0, 2.5)
    assert (config.foreign_tunes, config.foreign_prompts, config.seed) == (3, 4, 9)
    assert (config.auto_extend, config.auto_extend_price_mc) == (True, 7)
    assert "sd_test" not in repr(config)


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--train-seconds" in capsys.readouterr().out


def test_main_refuses_a_public_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "loopback" in capsys.readouterr().err


async def test_serve_prints_url_and_key_and_stops_on_request() -> None:
    stop = asyncio.Event()
    out = Output()
    config = build_config(parse_args(["--key", "sd_cli", "--foreign-tunes", "2"]))
    task = asyncio.create_task(serve(config, "127.0.0.1", 0, stop=stop, out=out))
    async with asyncio.timeout(5):
        await out.flushed.wait()
    base = out.getvalue().split("listening on ", 1)[1].split()[0]
    assert "sd_cli" in out.getvalue()
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + "/tunes", headers={"Authorization": "Bearer sd_cli"}) as response,
    ):
        assert response.status == 200
        assert len(await response.json()) == 2
    stop.set()
    await task
    assert "stopped" in out.getvalue()
