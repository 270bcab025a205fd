"""Invariant 5: the API key never appears in an exception, a repr or a log line."""

from __future__ import annotations

import logging
import traceback

import pytest
from pydantic import SecretStr

from bot.astria import AstriaClient, AstriaError, PromptRequest, RetryPolicy, TuneRequest
from bot.config import load_settings
from bot.offline.emulator import Emulator, Fault
from tests.conftest import KEY, MakeClient, photo

FAULTS = ["http_500", "http_502", "http_504", "http_429", "drop", "latency"]


def everything_about(exc: BaseException) -> str:
    """The exception as a log would show it, with its whole chain, args and attributes."""
    parts = ["".join(traceback.format_exception(exc)), repr(exc), repr(exc.args)]
    seen: BaseException | None = exc
    while seen is not None:
        parts.append(repr(vars(seen)))
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("kind", FAULTS)
async def test_key_is_in_no_exception_or_log_line(
    make_client: MakeClient, emulator: Emulator, kind: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    client = make_client(policy=RetryPolicy(max_attempts=2, base_delay=0.01, timeout=0.2))
    emulator.faults.script(None, *[Fault(kind, retry_after=1, delay=1.0)] * 8)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    calls = [
        client.get_user(),
        client.list_tunes(),
        client.get_tune(1),
        client.create_prompt(1, PromptRequest(text="x", seed=1)),
    ]
    for call in calls:
        try:
            await call
        except AstriaError as exc:
            errors.append(exc)
    assert errors, "the faults produced errors"
    for error in errors:
        assert KEY not in everything_about(error)
    assert KEY not in caplog.text
    assert "Bearer" not in caplog.text


async def test_key_is_not_in_auth_or_validation_errors(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    calls = [
        make_client(key=KEY + "x").get_user(),  # 401, with a key that contains the real one
        make_client().create_tune(TuneRequest(title="t", name="man")),  # 422
    ]
    for call in calls:
        with pytest.raises(AstriaError) as caught:
            await call
        assert KEY not in everything_about(caught.value)
    assert KEY not in caplog.text


def test_key_is_not_in_reprs(client: AstriaClient):
    assert KEY not in repr(client) and KEY not in str(vars(client))
    settings = load_settings(_env_file=None, astria_api_key=KEY, discord_token="discord-secret")
    shown = repr(settings) + str(settings) + str(settings.model_dump())
    assert KEY not in shown and "discord-secret" not in shown
    assert isinstance(settings.astria_api_key, SecretStr)


async def test_key_is_in_no_upload_error(
    make_client: MakeClient, emulator: Emulator, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    client = make_client(policy=RetryPolicy(max_attempts=1, lookup_wait=0, timeout=0.2))
    emulator.faults.script("POST /tunes", Fault("drop"), Fault("drop"))
    emulator.faults.script("GET /tunes", Fault("drop"))
    with pytest.raises(AstriaError) as caught:
        await client.create_tune(TuneRequest(title="u", name="man", images=[photo()]))
    assert KEY not in everything_about(caught.value)
    assert KEY not in caplog.text
