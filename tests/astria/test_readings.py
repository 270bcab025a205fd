"""The client under each reading of what Astria leaves undocumented, over real HTTP: how a
create the balance cannot pay for is refused, the status of an idempotent replay, and the
shape of a prompt create's answer (docs/emulator.md, "Readings")."""

from __future__ import annotations

import pytest

from bot.astria import AstriaClient, AstriaPaymentRefused, AstriaValidationError, PromptRequest
from bot.offline.emulator import READINGS, Emulator, EmulatorConfig, Reading
from tests.astria.test_client import trained_checkpoint, tune_request
from tests.conftest import KEY


@pytest.fixture(params=sorted(READINGS))
def emulator_config(request: pytest.FixtureRequest) -> EmulatorConfig:
    base = EmulatorConfig(api_key=KEY, train_seconds=60.0, prompt_seconds=10.0, idempotency=True)
    return READINGS[str(request.param)].apply(base)


def reading(emulator: Emulator) -> Reading:
    c = emulator.config
    return Reading(
        c.failed_prompt_cost,
        c.refund_failed_prompts,
        c.low_balance_status,
        c.replay_status,
        c.prompt_response,
    )


async def test_a_refusal_for_credit_is_read_as_such_and_its_words_carry_no_route(
    client: AstriaClient, emulator: Emulator
):
    tune = await trained_checkpoint(client, emulator)
    emulator.balance_mc = 1
    with pytest.raises(AstriaPaymentRefused) as caught:
        await client.create_prompt(tune.id, PromptRequest(text="sks man", num_images=2))
    error = caught.value
    assert error.status == reading(emulator).low_balance_status
    assert not error.ambiguous and not error.retryable  # nothing was made
    assert "Insufficient balance" in error.detail
    assert "/tunes" not in error.detail and str(error.status) not in error.detail


async def test_a_field_refusal_that_is_not_about_credit_stays_a_validation_error(
    client: AstriaClient, emulator: Emulator
):
    tune = await trained_checkpoint(client, emulator)
    with pytest.raises(AstriaValidationError) as caught:
        await client.create_prompt(tune.id, PromptRequest(text="sks man", num_images=99))
    assert not isinstance(caught.value, AstriaPaymentRefused)
    assert "/tunes" not in caught.value.detail


async def test_an_idempotent_replay_returns_the_same_tune_whatever_its_status(
    client: AstriaClient, emulator: Emulator
):
    first = await client.create_tune(tune_request("same-title", branch="fast"))
    again = await client.create_tune(tune_request("same-title", branch="fast"))
    assert again.id == first.id
    replays = [r for r in emulator.requests if r.route == "POST /tunes"]
    assert [r.status for r in replays] == [201, reading(emulator).replay_status]


async def test_a_prompt_create_is_read_whichever_shape_answers(
    client: AstriaClient, emulator: Emulator
):
    tune = await trained_checkpoint(client, emulator)
    made = [
        await client.create_prompt(tune.id, PromptRequest(text=f"sks man {n}", num_images=1))
        for n in range(3)
    ]
    assert len({p.id for p in made}) == 3
    assert all(p.tune_id == tune.id for p in made)
